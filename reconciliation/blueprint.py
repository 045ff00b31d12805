"""Reconciliation's triggers: its queue, its poison queue (messages that failed 5 times), the
timer that disables fallback devices whose reconciliation is overdue, and the timer that
measures the backlog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import azure.functions as func
from azure.functions.queue import QueueMessage

from observability.flow_spans import TraceContext
from reconciliation.backlog_probe import BacklogProbe
from reconciliation.pending_sweep import PendingSweep
from reconciliation.reconciler import Reconciler


class ReconciliationServices(Protocol):
    @property
    def reconciler(self) -> Reconciler: ...

    @property
    def pending_sweep(self) -> PendingSweep: ...

    @property
    def backlog_probe(self) -> BacklogProbe: ...


def reconciliation_blueprint(services: Callable[[], ReconciliationServices]) -> func.Blueprint:
    """The triggers, reaching the services through `services` (the composition root's)."""
    blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions

    @blueprint.queue_trigger(
        arg_name="message", queue_name="%RECONCILIATION_QUEUE%", connection="AzureWebJobsStorage"
    )
    async def reconcile(message: QueueMessage, context: func.Context) -> None:
        # Raising makes the message visible again; after maxDequeueCount it moves to poison.
        await services().reconciler.handle_raw(
            message.get_body(),
            dequeue_count=message.dequeue_count or 1,
            request_id=context.invocation_id,
            parent=TraceContext.of_invocation(context.trace_context),
        )

    @blueprint.queue_trigger(
        arg_name="message",
        queue_name="%RECONCILIATION_QUEUE%-poison",
        connection="AzureWebJobsStorage",
    )
    async def reconciliation_poison(message: QueueMessage, context: func.Context) -> None:
        await services().reconciler.bury_raw(
            message.get_body(),
            dequeue_count=message.dequeue_count or 1,
            request_id=context.invocation_id,
            parent=TraceContext.of_invocation(context.trace_context),
        )

    # Every 15 minutes; the deadline (hours) is the policy's reconciliation_deadline_hours.
    @blueprint.timer_trigger(
        schedule="0 */15 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True
    )
    async def pending_sweep(timer: func.TimerRequest, context: func.Context) -> None:
        await services().pending_sweep.run(request_id=context.invocation_id)

    # Every minute, as often as the metrics are exported: the backlog gauges report the latest
    # reading. Timers run on one instance at a time, so one worker measures.
    @blueprint.timer_trigger(
        schedule="0 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=False
    )
    async def backlog_probe(timer: func.TimerRequest, context: func.Context) -> None:
        await services().backlog_probe.run(request_id=context.invocation_id)

    return blueprint
