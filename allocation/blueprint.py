"""HTTP trigger of the DPS custom allocation webhook (POST /api/allocate, function key)."""

from __future__ import annotations

import azure.functions as func

import bootstrap
from allocation.http_endpoint import answer_allocation

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions


@blueprint.route(route="allocate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.queue_output(
    arg_name="reconciliation", queue_name="%RECONCILIATION_QUEUE%", connection="AzureWebJobsStorage"
)
@blueprint.queue_output(
    arg_name="dead_letters", queue_name="%DEAD_LETTER_QUEUE%", connection="AzureWebJobsStorage"
)
async def allocate(
    req: func.HttpRequest,
    context: func.Context,
    reconciliation: func.Out[str],
    dead_letters: func.Out[str],
) -> func.HttpResponse:
    services = bootstrap.services()
    answer = await answer_allocation(
        req.get_body(),
        request_id=context.invocation_id,
        service=services.allocation,
        budget_seconds=services.policy.outage.budget_seconds,
    )
    # The host sends these after the function returns, and fails the call if it cannot.
    if answer.reconciliation is not None:
        reconciliation.set(answer.reconciliation)
    if answer.dead_letter is not None:
        dead_letters.set(answer.dead_letter)
    return func.HttpResponse(
        answer.body, status_code=answer.status, mimetype=answer.content_type, headers=answer.headers
    )
