"""Function and master keys: optional locally, checked like the Functions host when configured."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

AuthLevel = Literal["anonymous", "function", "admin"]

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a caller sent; the header wins over `?code=`, as in the Functions host."""
    return headers.get(KEY_HEADER) or query.get(KEY_QUERY)


def _same(presented: str | None, expected: str | None) -> bool:
    if presented is None or expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True)
class KeyPolicy:
    """Core Tools enforces no keys; passing either key turns enforcement on for HTTP triggers."""

    function_key: str | None = None
    master_key: str | None = None

    @property
    def enforced(self) -> bool:
        return self.function_key is not None or self.master_key is not None

    def allows(self, level: AuthLevel, presented: str | None) -> bool:
        """Whether a key satisfies an HTTP trigger's authLevel."""
        if not self.enforced or level == "anonymous":
            return True
        if level == "function" and _same(presented, self.function_key):
            return True
        return _same(presented, self.master_key)

    def allows_admin(self, presented: str | None) -> bool:
        """Whether a caller may use host endpoints (admin invoke, Event Grid webhook).

        They are guarded by the master key only when one is configured, so a stack started
        with just --function-key can still deliver events and invoke non-HTTP functions.
        """
        return self.master_key is None or _same(presented, self.master_key)
