"""How audit entries are keyed in Azure Table Storage. Pure: no I/O.

Each entry is stored once per subject it concerns, so that every timeline is a range scan of
one partition:

- PartitionKey `device|<deviceId>`, `asset|<assetId>`, and `registration|<registrationId>`
  when the registration id differs from the device id (in DPS they are usually equal); an
  entry naming none of them goes to `unattributed|<YYYY-MM-DD>` (its UTC day).
- RowKey `<inverted time>|<entryId>`: 18 digits of (10^18 - 1 - microseconds since
  0001-01-01 UTC), so a partition scan returns the NEWEST entries first and "the latest N"
  is one bounded query; the entry id keeps keys unique and makes writes idempotent.

Table keys must not contain / \\ # ? or control characters (U+0000-U+001F, U+007F-U+009F).
Ids are escaped reversibly: those characters and `%` itself become `%XX` (two upper-case hex
digits), lone surrogates `%uXXXX`. A key is at most 1 KiB (512 UTF-16 code units here, to be
safe): an id whose escaped form would not fit is replaced by `%sha256-<hex of its UTF-8>`,
which no escaped id can equal (escaping never leaves `%` before a non-hex letter).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from audit.entry import AuditEntry

PartitionKind = Literal["device", "asset", "registration", "unattributed"]

MAX_KEY_UNITS = 512
"""A PartitionKey or RowKey is at most 1 KiB; counted as UTF-16 code units of 2 bytes."""
SEPARATOR = "|"
DIGEST_PREFIX = "%sha256-"

_TICK_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_TICK_DIGITS = 18
_TICK_LIMIT = 10**_TICK_DIGITS - 1
_ONE_MICROSECOND = timedelta(microseconds=1)
_ALWAYS_ESCAPED = frozenset("/\\#?%")
_ESCAPE = re.compile(r"%(?:u([0-9A-F]{4})|([0-9A-F]{2}))")


def escape_key(text: str) -> str:
    """`text` with every character a table key may not hold (and `%`) written as an escape."""
    parts: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _ALWAYS_ESCAPED or code < 0x20 or 0x7F <= code <= 0x9F:
            parts.append(f"%{code:02X}")
        elif 0xD800 <= code <= 0xDFFF:
            parts.append(f"%u{code:04X}")
        else:
            parts.append(ch)
    return "".join(parts)


def unescape_key(text: str) -> str:
    """The inverse of escape_key; ValueError for a malformed escape."""
    parts: list[str] = []
    position = 0
    while (percent := text.find("%", position)) != -1:
        found = _ESCAPE.match(text, percent)
        if found is None:
            raise ValueError(f"not an escaped key: bad escape at offset {percent}")
        parts += [text[position:percent], chr(int(found.group(1) or found.group(2), 16))]
        position = found.end()
    parts.append(text[position:])
    return "".join(parts)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def key_part(value: str, room: int) -> str:
    """`value` escaped, or its digest when the escaped form needs more than `room` units."""
    escaped = escape_key(value)
    if utf16_units(escaped) <= room:
        return escaped
    return DIGEST_PREFIX + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def partition_key(kind: PartitionKind, value: str) -> str:
    prefix = kind + SEPARATOR
    return prefix + key_part(value, MAX_KEY_UNITS - len(prefix))


def split_partition_key(key: str) -> tuple[str, str | None]:
    """(kind, value) of a PartitionKey; the value is None when it was stored as a digest."""
    kind, separator, part = key.partition(SEPARATOR)
    if not separator:
        raise ValueError("not an audit partition key: no separator")
    return kind, None if part.startswith(DIGEST_PREFIX) else unescape_key(part)


def utc(moment: datetime) -> datetime:
    """Aware and in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def inverted_ticks(moment: datetime) -> str:
    """18 digits that sort the later moment first."""
    micros = (utc(moment) - _TICK_ORIGIN) // _ONE_MICROSECOND
    return f"{_TICK_LIMIT - micros:0{_TICK_DIGITS}d}"


def row_key(at: datetime, entry_id: str) -> str:
    prefix = inverted_ticks(at) + SEPARATOR
    return prefix + key_part(entry_id, MAX_KEY_UNITS - len(prefix))


def row_key_time(key: str) -> datetime:
    """The moment a RowKey was made from (to the microsecond)."""
    ticks = key[:_TICK_DIGITS]
    if len(key) <= _TICK_DIGITS or key[_TICK_DIGITS] != SEPARATOR or not ticks.isdigit():
        raise ValueError("not an audit row key")
    return _TICK_ORIGIN + timedelta(microseconds=_TICK_LIMIT - int(ticks))


def unattributed_partition(day: date) -> str:
    return partition_key("unattributed", day.isoformat())


def partition_keys(entry: AuditEntry) -> list[str]:
    """Every partition the entry is written to (at least one)."""
    keys: list[str] = []
    if entry.device_id:
        keys.append(partition_key("device", entry.device_id))
    if entry.asset_id:
        keys.append(partition_key("asset", entry.asset_id))
    if entry.registration_id and entry.registration_id != entry.device_id:
        keys.append(partition_key("registration", entry.registration_id))
    if not keys:
        keys.append(unattributed_partition(utc(entry.at).date()))
    return keys
