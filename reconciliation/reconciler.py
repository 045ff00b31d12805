"""Reconciliation: finish what could not be done when it first happened, idempotently.

One handler per message kind (the table in Reconciler.__init__): a fallback allocation gets its
asset link and its real role; a replaced device is deregistered; a recorded twin or asset change
is applied again. Adding a kind is adding a row and its handler. Transient failures raise, so
the queue redelivers (visibility timeout) and, after maxDequeueCount tries, moves the message
to `<queue>-poison`, whose handler dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from pydantic import ValidationError

from asset_client import AssetRepository
from iothub_client import IotHubRegistry
from messages import DeadLetter, MessageKind, ReconciliationMessage
from messages.emission import Emission
from observability import DeviceLog
from observability import trace_attributes as attr
from observability.flow_spans import TraceContext, flow_span
from observability.reconciliation_metrics import (
    ReconciliationMetrics,
    global_reconciliation_metrics,
)
from reconciliation.audit_entries import reconciled_entry
from reconciliation.burial import Burial, unreadable_letter
from reconciliation.deregistration import Deregistration
from reconciliation.errors import ReplacementPending
from reconciliation.fallback_allocation import FallbackAllocation
from reconciliation.replays import AssetChangeReplay, TwinChangeReplay
from resilience.outbox import Outbox
from sync.asset_sync_service import AssetToTwinSync
from sync.device_sync_service import TwinToAssetSync

__all__ = ["KindHandler", "Reconciler", "ReplacementPending"]

_logger = logging.getLogger("reconciliation")
_tracer = trace.get_tracer("reconciliation")


class KindHandler(Protocol):
    async def __call__(
        self, message: ReconciliationMessage, log: DeviceLog, dequeue_count: int
    ) -> str:
        """Finish the message's work; the result names what happened. Transient failures
        raise (the queue delivers again); what cannot succeed is dead-lettered and answered."""
        ...


class Reconciler:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        hubs: IotHubRegistry,
        asset_sync: AssetToTwinSync,
        device_sync: TwinToAssetSync,
        outbox: Outbox,
        max_attempts: int = 5,
        metrics: ReconciliationMetrics | None = None,
    ) -> None:
        self._outbox = outbox
        self._metrics = metrics or global_reconciliation_metrics()
        self._bury = Burial(outbox)
        self._handlers: dict[MessageKind, KindHandler] = {
            "allocation": FallbackAllocation(
                assets=assets,
                hubs=hubs,
                planner=asset_sync.planner,
                bury=self._bury,
                max_attempts=max_attempts,
            ),
            "deregistration": Deregistration(
                assets=assets, hubs=hubs, hub_names=asset_sync.planner.hub_names, bury=self._bury
            ),
            "twinChange": TwinChangeReplay(device_sync, self._bury),
            "assetChange": AssetChangeReplay(asset_sync, self._bury),
        }

    async def handle_raw(
        self,
        body: bytes,
        *,
        dequeue_count: int,
        request_id: str,
        parent: TraceContext | None = None,
    ) -> str:
        """A message nobody can read is dead-lettered at once; retrying cannot fix it.

        `parent`: the invocation's trace context, the span's parent."""
        with flow_span(
            _tracer,
            attr.RECONCILIATION_SPAN,
            kind=SpanKind.CONSUMER,
            request_id=request_id,
            parent=parent,
            attributes={attr.DEQUEUE_COUNT: dequeue_count},
        ) as span:
            try:
                message = ReconciliationMessage.model_validate_json(body)
            except ValidationError as error:
                letter = unreadable_letter(body, str(error), dequeue_count, request_id)
                return await self._counted(span, "unreadable", self._dead_letter(letter))
            span.set_attribute(attr.RECONCILIATION_KIND, message.kind)
            handled = self.handle(message, dequeue_count=dequeue_count, request_id=request_id)
            return await self._counted(span, message.kind, handled)

    async def _counted(self, span: Span, kind: str, work: Awaitable[str]) -> str:
        """`work`'s result on the span and the metrics; "retry" when it raises (the queue
        delivers the message again, or at the last try buries it)."""
        try:
            result = await work
        except Exception:
            self._metrics.handled(kind, "retry")
            raise
        span.set_attribute(attr.RECONCILIATION_RESULT, result)
        self._metrics.handled(kind, result)
        return result

    async def _dead_letter(self, letter: DeadLetter) -> str:
        await self._outbox.send(Emission.of_dead_letter(letter))
        return "dead-lettered"

    async def handle(
        self, message: ReconciliationMessage, *, dequeue_count: int, request_id: str
    ) -> str:
        log = DeviceLog(
            _logger,
            request_id=request_id,
            registration_id=message.device_id,
            device_id=message.device_id,
            asset_id=message.asset_id,
        )
        if message.permanent:
            await self._bury(message, message.reason, dequeue_count, replayable=False)
            return "dead-lettered"
        result = await self._handlers[message.kind](message, log, dequeue_count)
        log.info("reconciled", kind=message.kind, result=result, dequeueCount=dequeue_count)
        entry = reconciled_entry(
            message, result, dequeue_count=dequeue_count, request_id=request_id
        )
        await self._outbox.send(Emission.of_audit([entry]))
        return result

    async def bury_raw(
        self,
        body: bytes,
        *,
        dequeue_count: int,
        request_id: str,
        parent: TraceContext | None = None,
    ) -> None:
        """The poison queue's handler: the message failed maxDequeueCount times."""
        try:
            message = ReconciliationMessage.model_validate_json(body)
        except ValidationError:
            await self.handle_raw(
                body,
                dequeue_count=dequeue_count,
                request_id=request_id,
                parent=parent,
            )
            return
        with flow_span(
            _tracer,
            attr.RECONCILIATION_SPAN,
            kind=SpanKind.CONSUMER,
            request_id=request_id,
            parent=parent,
            attributes={
                attr.DEQUEUE_COUNT: dequeue_count,
                attr.RECONCILIATION_KIND: message.kind,
                attr.RECONCILIATION_RESULT: "dead-lettered",
            },
        ):
            await self._bury_poisoned(message, dequeue_count)
        self._metrics.handled(message.kind, "dead-lettered")

    async def _bury_poisoned(self, message: ReconciliationMessage, dequeue_count: int) -> None:
        await self._bury(
            message,
            f"gave up after {max(dequeue_count, message.attempts)} attempts: {message.reason}",
            dequeue_count,
            replayable=True,
            source="poison",
        )
