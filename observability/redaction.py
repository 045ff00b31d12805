"""Key material never reaches a log line: the value after a secret's name becomes `***`.

Covered: `SharedAccessKey=` (IoT Hub, Event Hubs, Service Bus connection strings), `AccountKey=`
(storage), `SharedAccessSignature=` (storage connection strings), `sig=` (SAS tokens in query
strings and `SharedAccessSignature sr=...&sig=...` headers), `code=` (function keys in URLs),
`x-api-key` and `x-functions-key` headers, `Authorization` headers and `Bearer` tokens; each as
`name=value`, `name: value`, `'name': 'value'`, `"name": "value"` or escaped inside a JSON
string. The name stays, so the line still says which credential was involved. A value ends at
whitespace, a quote, `;`, `,` or `&` (its closing quote, if quoted).
"""

from __future__ import annotations

import logging
import re
from typing import Any

MARKER = "***"

# Letters, digits and hyphens: a secret's name must not be the tail of a longer word
# ("design=" is not "sig=").
_NOT_AFTER_WORD = r"(?<![A-Za-z0-9_-])"
# A quote, as around 'name', "name" or \"name\" (JSON inside a JSON string). Quotes need not
# pair up: a stray quote before a name must not hide it. Backslashes are bounded so that a long
# run of them cannot make a scan quadratic.
_OPTIONAL_QUOTE = r"""(?:\\{0,7}["'])?"""
# `=`, `:`, or the comma of a ('name', 'value') pair.
_SEPARATOR = r"""[ \t]*(?:[:=]|(?<=["']),)[ \t]*"""
# A quoted value runs to its closing quote (escapes skipped); bounded so that text with many
# unclosed quotes cannot make a scan quadratic in the line's length.
_QUOTED = r"""(?P<vq>\\{0,7}["'])(?:\\.|[^\\\n]){0,4096}?(?P=vq)"""
_BARE = r"""(?P<oq>\\{0,7}["'])?[^\s'"`;&,<>\\]+"""
_UNQUOTED_RUN = r"""[^\s'"`,;<>\\]+"""
# Known ones only: an unknown word after `Authorization:` may be the credential itself.
_SCHEMES = r"(?:Bearer|Basic|Negotiate|NTLM|HMAC-SHA256)"

_PATTERNS = [
    # Header values first, the scheme kept: `Authorization: Basic ***`. A SAS keeps its
    # sr, se and skn: only its sig is secret.
    re.compile(
        rf"(?P<key>{_NOT_AFTER_WORD}{_OPTIONAL_QUOTE}(?:proxy-)?authorization{_OPTIONAL_QUOTE}"
        rf"{_SEPARATOR}{_OPTIONAL_QUOTE}(?:{_SCHEMES}[ \t]+)?)(?!SharedAccessSignature[ \t])"
        rf"(?P<value>{_UNQUOTED_RUN})",
        re.IGNORECASE | re.ASCII,
    ),
    re.compile(
        rf"(?P<key>{_NOT_AFTER_WORD}Bearer[ \t]+)(?P<value>{_UNQUOTED_RUN})",
        re.IGNORECASE | re.ASCII,
    ),
    re.compile(
        rf"(?P<key>{_NOT_AFTER_WORD}{_OPTIONAL_QUOTE}"
        r"(?:SharedAccessKey|AccountKey|SharedAccessSignature|sig|x-api-key|x-functions-key)"
        rf"{_OPTIONAL_QUOTE}{_SEPARATOR})(?P<value>{_QUOTED}|{_BARE})",
        re.IGNORECASE | re.ASCII,
    ),
    re.compile(r"(?P<key>[?&]code=)(?P<value>[^\s'\"`&#;,<>\\]+)", re.IGNORECASE | re.ASCII),
]

# Every pattern above needs one of these: most lines have none and are returned at once.
_HINTS = ("key", "sig", "bearer", "authorization", "code=")

# Mapping keys whose string values are secrets whatever they look like, e.g. a headers dict.
SECRET_NAMES = frozenset(
    {
        "sharedaccesskey",
        "accountkey",
        "sharedaccesssignature",
        "sig",
        "x-api-key",
        "x-functions-key",
        "authorization",
        "proxy-authorization",
    }
)


def _masked(match: re.Match[str]) -> str:
    groups = match.groupdict()
    if groups.get("vq"):
        return f"{groups['key']}{groups['vq']}{MARKER}{groups['vq']}"
    return f"{groups['key']}{groups.get('oq') or ''}{MARKER}"


def redact(text: str) -> str:
    """`text` with the value of every secret named in it replaced by `***`."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_masked, text)
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: message with its args, extra fields, traceback, stack.

    A record without secrets is left as it was, its msg and args included.
    """
    try:
        message = record.getMessage()
    except Exception:  # bad args: logging reports them when a handler formats the record
        record.msg = _redacted(record.msg)
        record.args = _redacted(record.args)
    else:
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
    for name, value in list(record.__dict__.items()):
        if name in _FREE_TEXT_ATTRIBUTES or name not in _RECORD_ATTRIBUTES:
            record.__dict__[name] = (
                MARKER
                if name.lower() in SECRET_NAMES and isinstance(value, str)
                else _redacted(value)
            )
    traceback = record.exc_text or (
        _TRACEBACKS.formatException(record.exc_info) if record.exc_info else None
    )
    if traceback:
        redacted = redact(traceback)
        if redacted != traceback:
            record.exc_text = redacted
            # Formatters print exc_text when set; handlers that read exc_info themselves
            # (OpenTelemetry's) would still find the key in the exception's message.
            record.exc_info = None


class RedactionFilter(logging.Filter):
    """A handler filter: every record is redacted before its handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_redaction() -> bool:
    """Add a RedactionFilter to every root handler that has none; True if any was added.

    Records of any logger that propagates to root go through these handlers. Call it after
    the handlers exist (the Functions worker adds its own before it imports the app).
    """
    installed = False
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactionFilter) for existing in handler.filters):
            handler.addFilter(RedactionFilter())
            installed = True
    return installed


_MAX_DEPTH = 4
_TRACEBACKS = logging.Formatter()
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Standard attributes that may carry logged text: `message` is set by a formatter that ran
# before this filter (on another handler).
_FREE_TEXT_ATTRIBUTES = frozenset({"message", "stack_info"})


def _redacted(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secrets redacted, or `value` itself when it holds none.

    Never mutates: an extra field's dict may be the caller's own.
    """
    if isinstance(value, str):
        return redact(value)
    if depth >= _MAX_DEPTH:
        return value
    if type(value) is dict:
        copy = {
            key: MARKER
            if isinstance(key, str) and key.lower() in SECRET_NAMES and isinstance(item, str)
            else _redacted(item, depth + 1)
            for key, item in value.items()
        }
        return value if _same_items(copy.values(), value.values()) else copy
    if type(value) is list or type(value) is tuple:
        items = [_redacted(item, depth + 1) for item in value]
        if _same_items(items, value):
            return value
        return items if type(value) is list else tuple(items)
    return value


def _same_items(new: Any, old: Any) -> bool:
    return all(a is b for a, b in zip(new, old, strict=True))
