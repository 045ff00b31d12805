"""Queue trigger: the audit queue, whose entries the writer stores in the audit table."""

from __future__ import annotations

import azure.functions as func
from azure.functions.queue import QueueMessage

import bootstrap

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions


@blueprint.queue_trigger(
    arg_name="message", queue_name="%AUDIT_QUEUE%", connection="AzureWebJobsStorage"
)
async def audit_writer(message: QueueMessage, context: func.Context) -> None:
    # Returns normally even while the table is down (the entry is put back with a delay);
    # raises only when the queue will not take it back, so the host redelivers it.
    await bootstrap.services().audit_writer.handle(
        message.get_body(),
        dequeue_count=message.dequeue_count or 1,
        request_id=context.invocation_id,
    )
