"""HTTP trigger of the DPS custom allocation webhook (POST /api/allocate, function key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import azure.functions as func

from allocation.http_endpoint import answer_allocation
from allocation.service import AllocationService
from observability.flow_spans import TraceContext
from policies import Policy


class AllocationServices(Protocol):
    @property
    def allocation(self) -> AllocationService: ...

    @property
    def policy(self) -> Policy: ...


def allocation_blueprint(services: Callable[[], AllocationServices]) -> func.Blueprint:
    """The webhook, reaching the service through `services` (the composition root's)."""
    blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions

    @blueprint.route(route="allocate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    async def allocate(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        # The service has recorded what the answer needs (queues, trail) before it returns.
        ready = services()
        answer = await answer_allocation(
            req.get_body(),
            request_id=context.invocation_id,
            service=ready.allocation,
            budget_seconds=ready.policy.outage.budget_seconds,
            parent=TraceContext.of_invocation(context.trace_context),
        )
        return func.HttpResponse(
            answer.body,
            status_code=answer.status,
            mimetype=answer.content_type,
            headers=answer.headers,
        )

    return blueprint
