"""What GET /api/health answers: the policy in force and every circuit breaker's state.

Built from what the worker already holds, so asking calls no dependency (the asset system
least of all: a health check that calls it would count against it in an outage). The report
names breakers and hubs only: no URL, key, device id or dependency's error text. The operator
CLI reads the same model back (`python -m operator_cli status`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1
BreakerState = Literal["closed", "open", "half-open"]
HealthStatus = Literal["ok", "degraded"]


class BreakerReading(Protocol):
    """What the report reads of a circuit breaker (resilience.breaker.Breaker)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def state_since(self) -> datetime | None: ...

    @property
    def fail_counter(self) -> int: ...

    @property
    def fail_max(self) -> int: ...

    @property
    def reset_timeout_seconds(self) -> float: ...


class BreakerHealth(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    name: str = Field(max_length=300)
    """`asset-api`, or `iot-hub:<hub host name>`."""
    state: BreakerState
    since: datetime | None
    """When it entered its state; None: closed since the worker started."""
    failures: int = Field(ge=0)
    """Failures in a row counted so far (those that opened it, while open)."""
    fail_max: int = Field(alias="failMax", ge=1)
    reset_seconds: float = Field(alias="resetSeconds", ge=0)
    """How long it stays open before one trial call goes through."""


class PolicyHealth(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str = Field(max_length=64)


class HealthReport(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schemaVersion")
    status: HealthStatus
    """`degraded` when any breaker is not closed: the app still answers (in an asset outage,
    with the fallback), so the endpoint answers 200 either way."""
    checked_at: datetime = Field(alias="checkedAt")
    policy: PolicyHealth
    breakers: list[BreakerHealth]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def health_report(
    *, policy_version: str, breakers: Iterable[BreakerReading], now: datetime
) -> HealthReport:
    shown = [
        BreakerHealth(
            name=breaker.name,
            state=_state(breaker.state),
            since=breaker.state_since,
            failures=breaker.fail_counter,
            fail_max=breaker.fail_max,
            reset_seconds=breaker.reset_timeout_seconds,
        )
        for breaker in breakers
    ]
    return HealthReport(
        status="ok" if all(breaker.state == "closed" for breaker in shown) else "degraded",
        checked_at=now,
        policy=PolicyHealth(version=policy_version),
        breakers=shown,
    )


def _state(raw: str) -> BreakerState:
    if raw == "closed":
        return "closed"
    if raw == "half-open":
        return "half-open"
    return "open"  # pybreaker has no fourth state; anything else must not read as healthy
