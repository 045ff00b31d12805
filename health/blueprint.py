"""HTTP trigger: GET /api/health (function key), the app's dependencies as this worker sees them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import azure.functions as func

from health.report import BreakerReading, health_report
from policies import Policy


class HealthServices(Protocol):
    @property
    def policy(self) -> Policy: ...

    def breakers(self) -> Sequence[BreakerReading]: ...


def health_blueprint(services: Callable[[], HealthServices]) -> func.Blueprint:
    """The endpoint, reading the policy and the breakers through `services` (the composition
    root's)."""
    blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions

    @blueprint.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    async def health(req: func.HttpRequest) -> func.HttpResponse:
        ready = services()
        report = health_report(
            policy_version=ready.policy.version,
            breakers=ready.breakers(),
            now=datetime.now(UTC),
        )
        return func.HttpResponse(
            report.to_json(),
            status_code=200,
            mimetype="application/json",
            headers={"cache-control": "no-store"},
        )

    return blueprint
