"""Time as IoT Hub writes it: UTC, seven fractional digits, a trailing Z."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]

# What IoT Hub reports for times that never happened (a device that never connected).
NEVER = "0001-01-01T00:00:00Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """2022-06-01T22:27:50.2612586Z: .NET's round-trip format, which IoT Hub uses throughout."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
