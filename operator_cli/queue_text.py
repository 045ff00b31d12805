"""A queue message's text read back as the app wrote it: base64 or plain, UTF-8 JSON, an object.

Pure: no I/O. What cannot be read says why, instead of raising, so one bad message never hides
the others.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from resilience.queue_port import QueueEncoding


@dataclass(frozen=True)
class Unreadable:
    problem: str


def json_object(text: str, encoding: QueueEncoding) -> dict[str, Any] | Unreadable:
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return Unreadable("not base64 (QUEUE_MESSAGE_ENCODING is base64)")
    else:
        data = text.encode("utf-8", "surrogatepass")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return Unreadable("not UTF-8 text")
    except json.JSONDecodeError as exc:
        return Unreadable(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except (ValueError, RecursionError):
        return Unreadable("not JSON")
    if not isinstance(parsed, dict):
        return Unreadable(f"not a JSON object but {type(parsed).__name__}")
    return parsed
