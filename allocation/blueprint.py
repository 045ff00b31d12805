"""HTTP trigger of the DPS custom allocation webhook (POST /api/allocate, function key)."""

from __future__ import annotations

import azure.functions as func

import bootstrap
from allocation.http_endpoint import answer_allocation

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions


@blueprint.route(route="allocate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def allocate(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # The service has recorded what the answer needs (queues, trail) before it returns.
    services = bootstrap.services()
    answer = await answer_allocation(
        req.get_body(),
        request_id=context.invocation_id,
        service=services.allocation,
        budget_seconds=services.policy.outage.budget_seconds,
    )
    return func.HttpResponse(
        answer.body, status_code=answer.status, mimetype=answer.content_type, headers=answer.headers
    )
