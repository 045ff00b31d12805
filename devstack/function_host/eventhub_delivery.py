"""Deliver Event Hub events to eventHubTrigger functions, as the Event Hubs trigger would.

`POST /admin/devstack/eventhubs/{eventHubName}` with `{"events": [...]}` stands in for an Event
Hub (for example IoT Hub's built-in endpoint): every function whose trigger listens on that
event hub name (after `%setting%` resolution, case-insensitively) gets the events in order,
batched by host.json `extensions.eventHubs.maxEventBatchSize` for cardinality many and one
invocation per event for cardinality one. Arguments are built with azure-functions' own
EventHubTriggerConverter from the trigger metadata the Functions host sends the Python worker,
so `iothub_metadata`, `metadata`, `enqueued_time`, `sequence_number` and `offset` come out as
in Azure. A function retry policy (`@app.retry`) is honoured; without one a failure is logged
and the batch counts as processed, because the Event Hubs trigger checkpoints anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devstack.function_host import delivery
from devstack.function_host.eventhub_arguments import trigger_argument
from devstack.function_host.eventhub_events import HubEvent, Instant, SentEvent
from devstack.function_host.eventhub_listeners import PARTITION_ID, EventHubListener
from devstack.function_host.invocation import Invoker
from devstack.function_host.retry_policy import RetryPolicy

logger = logging.getLogger("devstack.function_host.eventhubs")


@dataclass
class DeliveryResult:
    """What one request caused: invocations (batches or single events), failures, attempts."""

    invocations: int = 0
    failed: int = 0
    attempts: int = 0
    functions: list[str] = field(default_factory=list)

    def add(self, other: DeliveryResult) -> None:
        self.invocations += other.invocations
        self.failed += other.failed
        self.attempts += other.attempts
        self.functions += other.functions

    def as_json(self) -> dict[str, Any]:
        return {
            "invocations": self.invocations,
            "failed": self.failed,
            "attempts": self.attempts,
            "functions": self.functions,
        }


def _trigger_details(events: Sequence[HubEvent]) -> str:
    first, last = events[0], events[-1]
    return (
        f"PartitionId: {PARTITION_ID}, Offset: {first.offset}-{last.offset}, "
        f"EnqueueTimeUtc: {first.enqueued_time.log_text()}-{last.enqueued_time.log_text()}, "
        f"SequenceNumber: {first.sequence_number}-{last.sequence_number}, Count: {len(events)}"
    )


class EventHubDelivery:
    """The listeners by event hub name, and in-order delivery to each of them."""

    def __init__(
        self, listeners: Sequence[EventHubListener], invoker: Invoker, max_batch_size: int
    ) -> None:
        self.listeners = list(listeners)
        self.max_batch_size = max_batch_size
        self._invoker = invoker
        self._locks = {id(listener): asyncio.Lock() for listener in listeners}
        self._next_sequence: dict[str, int] = {}

    def listeners_for(self, event_hub_name: str) -> list[EventHubListener]:
        wanted = event_hub_name.lower()
        return [item for item in self.listeners if item.event_hub_name.lower() == wanted]

    def hub_names(self) -> list[str]:
        return sorted({item.event_hub_name for item in self.listeners}, key=str.lower)

    def enqueue(self, event_hub_name: str, sent: Sequence[SentEvent]) -> list[HubEvent]:
        """Stamp what the sender left out: sequence numbers continue per event hub."""
        key = event_hub_name.lower()
        stamped = []
        for event in sent:
            sequence = (
                event.sequence_number
                if event.sequence_number is not None
                else self._next_sequence.get(key, 0)
            )
            self._next_sequence[key] = max(self._next_sequence.get(key, 0), sequence + 1)
            stamped.append(
                HubEvent(
                    body=event.body,
                    properties=event.properties,
                    system_properties=event.system_properties,
                    enqueued_time=event.enqueued_time or Instant.now(),
                    sequence_number=sequence,
                    offset=event.offset if event.offset is not None else str(sequence),
                    partition_key=event.partition_key,
                )
            )
        return stamped

    async def deliver(self, event_hub_name: str, sent: Sequence[SentEvent]) -> DeliveryResult:
        """Run every listener on the events (listeners concurrently, each one in order)."""
        listeners = self.listeners_for(event_hub_name)
        events = self.enqueue(event_hub_name, sent)
        # Tasks are created before the first await, so they queue on each listener's lock in
        # request order: a later request never overtakes an earlier one.
        tasks = [asyncio.ensure_future(self._run(listener, events)) for listener in listeners]
        result = DeliveryResult()
        for partial in await asyncio.gather(*tasks):
            result.add(partial)
        return result

    def _batches(self, listener: EventHubListener, events: list[HubEvent]) -> list[list[HubEvent]]:
        size = self.max_batch_size if listener.many else 1
        return [events[start : start + size] for start in range(0, len(events), size)]

    async def _run(self, listener: EventHubListener, events: list[HubEvent]) -> DeliveryResult:
        result = DeliveryResult(functions=[listener.spec.name])
        async with self._locks[id(listener)]:
            for batch in self._batches(listener, events):
                trace_parent = None if listener.many else batch[0].properties.get("Diagnostic-Id")
                outcome = await delivery.deliver(
                    self._invoker,
                    listener.spec,
                    functools.partial(trigger_argument, listener, batch),
                    reason="(null)",
                    details=_trigger_details(batch),
                    trace_parent=trace_parent if isinstance(trace_parent, str) else None,
                    retry=listener.retry,
                )
                result.invocations += 1
                result.attempts += outcome.attempts
                if not outcome.succeeded:
                    result.failed += 1
                    self._log_given_up(listener, batch, outcome.attempts, listener.retry)
        return result

    @staticmethod
    def _log_given_up(
        listener: EventHubListener,
        batch: list[HubEvent],
        attempts: int,
        policy: RetryPolicy | None,
    ) -> None:
        logger.warning(
            "%s; the Event Hubs trigger checkpoints anyway, so these events are not redelivered",
            "no retry policy" if policy is None else f"retries exhausted after {attempts} attempts",
            extra={
                "function": listener.spec.name,
                "eventHub": listener.event_hub_name,
                "sequenceNumbers": f"{batch[0].sequence_number}-{batch[-1].sequence_number}",
            },
        )
