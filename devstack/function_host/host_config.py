"""Read host.json the way the Functions host does, keeping only what the dev host acts on."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from devstack.function_host.errors import StartupError

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_MAX_EVENT_BATCH_SIZE = 100
MIN_POLLING_INTERVAL = 0.1
"""The Storage Queues extension's QueuePollingIntervals.Minimum (100 ms)."""
MAX_QUEUE_BATCH_SIZE = 32
"""Get Messages returns at most 32 messages; QueuesOptions refuses a larger batchSize."""

# .NET TimeSpan text: [d.]hh:mm[:ss[.fffffff]]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")

MessageEncoding = Literal["base64", "none"]


@dataclass(frozen=True)
class QueuesOptions:
    """host.json `extensions.queues` (Storage Queues extension 5.x), with its defaults."""

    batch_size: int = 16
    # None: the extension's default, batchSize / 2 (one vCPU, as on the Consumption plan).
    new_batch_threshold: int | None = None
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: MessageEncoding = "base64"

    @property
    def fetch_threshold(self) -> int:
        """Fetch a new batch once no more than this many messages are still being processed."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the dev host honours."""

    route_prefix: str
    raw: dict[str, Any]
    max_event_batch_size: int = DEFAULT_MAX_EVENT_BATCH_SIZE
    queues: QueuesOptions = field(default_factory=QueuesOptions)


def load_host_config(script_root: Path, environ: Mapping[str, str] | None = None) -> HostConfig:
    """Parse `<script_root>/host.json`; like Core Tools, a missing or non-2.0 file is fatal.

    App settings named `AzureFunctionsJobHost__a__b` override host.json's `a.b`, as the
    Functions host does (values stay strings; the readers below accept those).
    """
    path = script_root / "host.json"
    if not path.is_file():
        raise StartupError(f"{path} not found: the script root must contain host.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise StartupError(f"{path} must hold a JSON object")
    _apply_overrides(raw, environ or {})
    version = raw.get("version")
    if version != "2.0":
        raise StartupError(f'{path}: "version" must be "2.0" (found {version!r})')
    return HostConfig(
        route_prefix=_route_prefix(path, raw),
        raw=raw,
        max_event_batch_size=_max_event_batch_size(path, raw),
        queues=_queues_options(path, raw),
    )


_OVERRIDE_PREFIX = "azurefunctionsjobhost__"


def _apply_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.lower().startswith(_OVERRIDE_PREFIX):
            continue
        path = [part for part in name[len(_OVERRIDE_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            existing = next((k for k in node if k.lower() == part.lower()), part)
            child = node.get(existing)
            if not isinstance(child, dict):
                child = {}
                node[existing] = child
            node = child
        leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
        node[leaf] = _typed(value, node.get(leaf))


def _typed(value: str, current: Any) -> Any:
    """Keep the type the file used for that key, so numbers stay numbers."""
    if isinstance(current, bool):
        return value.strip().lower() == "true"
    if isinstance(current, int):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _section(raw: Any, name: str) -> Any:
    """A host.json section by name; the host binds configuration case-insensitively."""
    if not isinstance(raw, dict):
        return None
    for key, value in raw.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def _route_prefix(path: Path, raw: dict[str, Any]) -> str:
    http = raw.get("extensions", {}).get("http", {})
    if not isinstance(http, dict) or "routePrefix" not in http:
        return DEFAULT_ROUTE_PREFIX
    prefix = http["routePrefix"]
    if not isinstance(prefix, str):
        raise StartupError(f"{path}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")


def _max_event_batch_size(path: Path, raw: dict[str, Any]) -> int:
    """extensions.eventHubs.maxEventBatchSize (Event Hubs extension 5.x+), default 100."""
    value = _section(_section(_section(raw, "extensions"), "eventHubs"), "maxEventBatchSize")
    if value is None:
        return DEFAULT_MAX_EVENT_BATCH_SIZE
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # .NET configuration binding converts numeric strings
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StartupError(
            f"{path}: extensions.eventHubs.maxEventBatchSize must be a positive integer, "
            f"found {value!r}"
        )
    return value


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string such as 00:01:00 or 00:00:00.100; ValueError if not."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan like 00:00:30 or 00:00:00.500")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ValueError(f"{text!r} is not a TimeSpan: hours, minutes or seconds out of range")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (int(fraction.ljust(7, "0")) / 10_000_000 if fraction else 0.0)


def _queues_options(path: Path, raw: dict[str, Any]) -> QueuesOptions:
    """extensions.queues; a value the extension would refuse stops the host, as it does."""
    section = _section(_section(raw, "extensions"), "queues")
    if section is None:
        return QueuesOptions()
    where = f"{path}: extensions.queues"
    if not isinstance(section, dict):
        raise StartupError(f"{where} must be an object")
    defaults = QueuesOptions()
    batch_size = _integer(where, section, "batchSize", defaults.batch_size, 1)
    if batch_size > MAX_QUEUE_BATCH_SIZE:
        raise StartupError(f"{where}.batchSize must be at most {MAX_QUEUE_BATCH_SIZE}")
    threshold = _section(section, "newBatchThreshold")
    max_polling = _timespan(where, section, "maxPollingInterval", defaults.max_polling_interval)
    if max_polling < MIN_POLLING_INTERVAL:
        raise StartupError(f"{where}.maxPollingInterval must be at least 00:00:00.100")
    encoding = _section(section, "messageEncoding")
    if encoding is None:
        encoding = defaults.message_encoding
    if not isinstance(encoding, str) or encoding.lower() not in ("base64", "none"):
        raise StartupError(
            f'{where}.messageEncoding must be "base64" or "none", found {encoding!r}'
        )
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=None
        if threshold is None
        else _integer(where, section, "newBatchThreshold", 0, 0),
        max_polling_interval=max_polling,
        visibility_timeout=_timespan(
            where, section, "visibilityTimeout", defaults.visibility_timeout
        ),
        max_dequeue_count=_integer(
            where, section, "maxDequeueCount", defaults.max_dequeue_count, 1
        ),
        message_encoding="none" if encoding.lower() == "none" else "base64",
    )


def _integer(where: str, section: dict[str, Any], name: str, default: int, minimum: int) -> int:
    value = _section(section, name)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # .NET configuration binding converts numeric strings
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StartupError(f"{where}.{name} must be an integer >= {minimum}, found {value!r}")
    return value


def _timespan(where: str, section: dict[str, Any], name: str, default: float) -> float:
    value = _section(section, name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise StartupError(f'{where}.{name} must be a TimeSpan string like "00:00:02"')
    try:
        return parse_timespan(value)
    except ValueError as exc:
        raise StartupError(f"{where}.{name}: {exc}") from None
