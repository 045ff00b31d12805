"""Function retry policies (`@app.retry`), as the worker indexes them and the host applies them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from devstack.function_host.errors import StartupError


@dataclass(frozen=True)
class RetryPolicy:
    """A function retry policy as the worker sends it to the host (whole seconds)."""

    strategy: Literal["fixed_delay", "exponential_backoff"]
    max_retry_count: int
    delay_interval: float = 0.0
    minimum_interval: float = 0.0
    maximum_interval: float = 0.0

    def allows(self, retry_count: int) -> bool:
        """Whether retry number `retry_count` (1-based) may run; -1 retries forever."""
        return self.max_retry_count < 0 or retry_count <= self.max_retry_count

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before retry number `retry_count` (1-based)."""
        if self.strategy == "fixed_delay":
            return self.delay_interval
        grown = self.minimum_interval * 2.0 ** min(retry_count - 1, 32)
        return min(self.maximum_interval, grown)


def _interval(function_name: str, setting: str, value: Any) -> float:
    """The worker's convert_to_seconds: time.strptime(value, '%H:%M:%S')."""
    try:
        parsed = datetime.datetime.strptime(str(value), "%H:%M:%S")
    except ValueError:
        raise StartupError(
            f"function {function_name!r}: retry {setting} must look like HH:MM:SS "
            f"(the worker parses it with '%H:%M:%S'), found {value!r}"
        ) from None
    return float(parsed.hour * 3600 + parsed.minute * 60 + parsed.second)


def parse_retry_policy(
    function_name: str, settings: Mapping[str, Any] | None
) -> RetryPolicy | None:
    """The `@app.retry(...)` setting; anything the worker cannot index is a StartupError."""
    if not settings:
        return None
    strategy = settings.get("strategy")
    try:
        max_retry_count = int(settings.get("max_retry_count"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StartupError(
            f"function {function_name!r}: retry max_retry_count must be an integer, "
            f"found {settings.get('max_retry_count')!r}"
        ) from None
    if max_retry_count < -1:
        raise StartupError(
            f"function {function_name!r}: retry max_retry_count must be -1 (forever) or more"
        )
    if strategy == "fixed_delay":
        return RetryPolicy(
            strategy="fixed_delay",
            max_retry_count=max_retry_count,
            delay_interval=_interval(
                function_name, "delay_interval", settings.get("delay_interval")
            ),
        )
    if strategy == "exponential_backoff":
        minimum = _interval(function_name, "minimum_interval", settings.get("minimum_interval"))
        maximum = _interval(function_name, "maximum_interval", settings.get("maximum_interval"))
        if maximum < minimum:
            raise StartupError(
                f"function {function_name!r}: retry maximum_interval is below minimum_interval"
            )
        return RetryPolicy(
            strategy="exponential_backoff",
            max_retry_count=max_retry_count,
            minimum_interval=minimum,
            maximum_interval=maximum,
        )
    raise StartupError(
        f"function {function_name!r}: retry strategy must be 'fixed_delay' or "
        f"'exponential_backoff', found {strategy!r}"
    )
