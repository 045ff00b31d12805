"""Queue trigger: the audit queue, whose entries the writer stores in the audit table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import azure.functions as func
from azure.functions.queue import QueueMessage

from audit.writer import AuditWriter
from observability.flow_spans import TraceContext


class AuditServices(Protocol):
    @property
    def audit_writer(self) -> AuditWriter: ...


def audit_blueprint(services: Callable[[], AuditServices]) -> func.Blueprint:
    """The trigger, reaching the writer through `services` (the composition root's)."""
    blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions

    @blueprint.queue_trigger(
        arg_name="message", queue_name="%AUDIT_QUEUE%", connection="AzureWebJobsStorage"
    )
    async def audit_writer(message: QueueMessage, context: func.Context) -> None:
        # Returns normally even while the table is down (the entry is put back with a delay);
        # raises only when the queue will not take it back, so the host redelivers it.
        await services().audit_writer.handle(
            message.get_body(),
            dequeue_count=message.dequeue_count or 1,
            request_id=context.invocation_id,
            parent=TraceContext.of_invocation(context.trace_context),
        )

    return blueprint
