"""What a device-reported value must look like before sync copies it anywhere. Pure; no I/O.

Each constraint answers with the rule a value breaks, worded from the rule alone: the value is
written by the device, untrusted, and must never reach a log line or an audit entry. Checks
look at sizes before contents, so a huge or deeply nested value costs no more than its bound.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

_FORBIDDEN_IN_STRINGS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters, and lone surrogates (JSON can escape them; UTF-8 cannot encode them)."""
_SAFE_INTEGER = 2**53
"""Beyond this JSON parsers in other languages (the asset system's) lose integer precision."""


class ValueConstraint(Protocol):
    """The shape a device-owned reported value must have; `null` is judged by the caller."""

    @property
    def description(self) -> str: ...

    def violation(self, value: Any) -> str | None:
        """None if the value fits; else which part of the rule it breaks (never the value)."""
        ...


@dataclass(frozen=True)
class Text:
    """A string of min..max characters, each from one regex character class."""

    min_length: int
    max_length: int
    charset: str
    """The body of a regex character class, e.g. `A-Za-z0-9._+-`."""
    charset_name: str | None = None

    @property
    def description(self) -> str:
        return f"a string of {self.min_length}-{self.max_length} characters from {self._chars}"

    @property
    def _chars(self) -> str:
        return self.charset_name or f"[{self.charset}]"

    def violation(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "not a string"
        if not self.min_length <= len(value) <= self.max_length:
            return f"length outside {self.min_length}-{self.max_length}"
        if re.fullmatch(f"[{self.charset}]*", value) is None:
            return f"a character outside {self._chars}"
        return None

    def fits(self, value: Any) -> bool:
        return self.violation(value) is None


@dataclass(frozen=True)
class ListOf:
    """A list of at most max_items items, each fitting `item`, none twice."""

    item: Text
    max_items: int

    @property
    def description(self) -> str:
        return f"a list of at most {self.max_items} distinct items, each {self.item.description}"

    def violation(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return "not a list"
        if len(value) > self.max_items:
            return f"more than {self.max_items} items"
        for item in value:
            problem = self.item.violation(item)
            if problem is not None:
                return f"an item: {problem}"
        if len(set(value)) != len(value):
            return "an item appears twice"
        return None


@dataclass(frozen=True)
class JsonObject:
    """A JSON object of bounded nesting, entry count and serialised size.

    Keys fit `key`; strings are free of control characters and at most max_string long;
    numbers are finite, integers within what every JSON parser keeps exactly.
    """

    max_chars: int
    max_depth: int
    max_entries: int
    key: Text
    max_string: int

    @property
    def description(self) -> str:
        return (
            f"a JSON object of at most {self.max_chars} characters serialised, "
            f"{self.max_depth} levels deep and {self.max_entries} keys and array items in all; "
            f"keys {self.key.description}; strings of at most {self.max_string} characters "
            "without control characters; finite numbers"
        )

    def violation(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return "not a JSON object"
        problem = self._walk(value)
        if problem is not None:
            return problem
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        if size > self.max_chars:
            return f"more than {self.max_chars} characters serialised"
        return None

    def _walk(self, root: dict[str, Any]) -> str | None:
        """Iterative, and stops at the first broken bound: no input can make it deep or long."""
        entries = 0
        pending: list[tuple[Any, int]] = [(root, 1)]
        while pending:
            value, depth = pending.pop()
            if isinstance(value, dict | list):
                if depth > self.max_depth:
                    return f"nested deeper than {self.max_depth} levels"
                entries += len(value)
                if entries > self.max_entries:
                    return f"more than {self.max_entries} keys and array items"
                if isinstance(value, dict):
                    for key in value:
                        if not self.key.fits(key):
                            return f"a key that is not {self.key.description}"
                    pending.extend((item, depth + 1) for item in value.values())
                else:
                    pending.extend((item, depth + 1) for item in value)
                continue
            problem = self._leaf(value)
            if problem is not None:
                return problem
        return None

    def _leaf(self, value: Any) -> str | None:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, str):
            if len(value) > self.max_string:
                return f"a string longer than {self.max_string} characters"
            if _FORBIDDEN_IN_STRINGS.search(value):
                return "a control character or lone surrogate in a string"
            return None
        if isinstance(value, int):
            return None if abs(value) <= _SAFE_INTEGER else "an integer beyond ±2^53"
        if isinstance(value, float):
            return None if math.isfinite(value) else "a number that is not finite"
        return "a value that is not JSON"


DEVICE_ID = Text(
    1, 128, r"A-Za-z0-9\-.%_*?!(),:=@$'", "IoT Hub device id characters [A-Za-z0-9-.%_*?!(),:=@$']"
)
"""IoT Hub's device id rule (identity registry): 1-128 ASCII letters, digits and -.%_*?!(),:=@$'."""
