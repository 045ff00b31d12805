"""Fault injection: rules that make the next N matching requests fail or slow down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import argument_invalid

# Paths the rules never touch, so that a test can always inspect and clear them.
_EXEMPT = ("/devstack/faults", "/devstack/events", "/devstack/stats")
_MAX_LATENCY_MS = 60_000


@dataclass
class FaultRule:
    """`count` requests whose path starts with `path_prefix` (and of `method`, if set) are
    delayed by `latency_ms`, then answered `status` (or served normally when status is None)."""

    status: int | None
    count: int
    latency_ms: int
    path_prefix: str
    method: str | None
    error_code: str | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.count > 0
            and path.startswith(self.path_prefix)
            and (self.method is None or self.method == method)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.count,
            "latencyMs": self.latency_ms,
            "pathPrefix": self.path_prefix,
            "method": self.method,
            "errorCode": self.error_code,
        }


def _int_field(body: dict[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise argument_invalid(f"fault field {name} must be an integer")
    return value


def _str_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise argument_invalid(f"fault field {name} must be a string")
    return value


def parse_fault(body: dict[str, Any]) -> FaultRule:
    """Validate `{"status", "count", "latencyMs", "pathPrefix", "method", "errorCode"}`."""
    known = {"status", "count", "latencyMs", "pathPrefix", "method", "errorCode"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise argument_invalid(f"unknown fault fields: {', '.join(unknown)}")
    status = _int_field(body, "status", None)
    count = _int_field(body, "count", 1)
    latency = _int_field(body, "latencyMs", 0)
    if status is not None and not 400 <= status <= 599:
        raise argument_invalid("fault status must be between 400 and 599")
    if count is None or count < 1:
        raise argument_invalid("fault count must be at least 1")
    if latency is None or not 0 <= latency <= _MAX_LATENCY_MS:
        raise argument_invalid(f"fault latencyMs must be between 0 and {_MAX_LATENCY_MS}")
    if status is None and latency == 0:
        raise argument_invalid("a fault needs a status, a latencyMs, or both")
    prefix = _str_field(body, "pathPrefix") or "/"
    if not prefix.startswith("/"):
        raise argument_invalid("fault pathPrefix must start with /")
    method = _str_field(body, "method")
    return FaultRule(
        status=status,
        count=count,
        latency_ms=latency,
        path_prefix=prefix,
        method=method.upper() if method else None,
        error_code=_str_field(body, "errorCode"),
    )


class FaultInjector:
    """The active rules of one hub, first match wins; each match uses up one count."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        self._rules.append(rule)

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        if not self._rules or path.startswith(_EXEMPT):
            return None
        for rule in self._rules:
            if rule.matches(method, path):
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                return rule
        return None
