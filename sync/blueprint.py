"""Triggers of the two sync directions: asset events (Event Grid) and twin changes (Event Hub)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, List, Protocol  # noqa: UP035 - the worker rejects list[...] annotations

import azure.functions as func

from observability.flow_spans import TraceContext
from resilience.outbox import Outbox
from sync.asset_sync_service import AssetToTwinSync
from sync.device_sync_service import TwinToAssetSync
from sync.events import RawTwinEvent
from sync.handlers import handle_asset_event, handle_twin_batch


class SyncServices(Protocol):
    @property
    def asset_sync(self) -> AssetToTwinSync: ...

    @property
    def device_sync(self) -> TwinToAssetSync: ...

    @property
    def outbox(self) -> Outbox: ...


def sync_blueprint(services: Callable[[], SyncServices]) -> func.Blueprint:
    """The triggers, reaching the services through `services` (the composition root's)."""
    blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions

    @blueprint.event_grid_trigger(arg_name="event")
    async def asset_changed(event: func.EventGridEvent, context: func.Context) -> None:
        # The worker hands over a func.CloudEvent instead when the subscription uses
        # CloudEvents; the annotation must stay one class, or the worker refuses to index it.
        parent = TraceContext.of_invocation(context.trace_context)
        if isinstance(event, func.CloudEvent):
            event_type, event_time = event.type, event.time
            # CloudEvents' distributed tracing extension: the asset change's own trace, so the
            # change and the twin write it causes are one trace.
            extensions = event.extension_attrs
            if isinstance(extensions.get("traceparent"), str):
                state = extensions.get("tracestate")
                parent = TraceContext(
                    extensions["traceparent"], state if isinstance(state, str) else None
                )
        else:
            event_type, event_time = event.event_type, event.event_time
        ready = services()
        await handle_asset_event(
            service=ready.asset_sync,
            outbox=ready.outbox,
            event_id=event.id,
            subject=event.subject,
            event_type=event_type,
            data=event.get_json(),
            request_id=context.invocation_id,
            event_time=event_time,
            parent=parent,
        )

    # Without a retry policy the Event Hubs trigger checkpoints past a failed batch; the only
    # failure left after per-event recording is the reconciliation queue itself being down.
    @blueprint.retry(
        strategy="exponential_backoff",
        max_retry_count="8",
        minimum_interval="00:00:02",
        maximum_interval="00:05:00",
    )
    @blueprint.event_hub_message_trigger(
        arg_name="events",
        event_hub_name="%TWIN_EVENTS_HUB%",
        connection="IOT_HUB_EVENTS_CONNECTION",
        # A group of the app's own: $Default is shared with every other reader of the stream.
        consumer_group="%TWIN_EVENTS_CONSUMER_GROUP%",
        cardinality=func.Cardinality.MANY,
    )
    async def twin_changed(events: List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
        await handle_twin_batch(
            services().device_sync,
            [_raw(event, index) for index, event in enumerate(events)],
            context.invocation_id,
            parent=TraceContext.of_invocation(context.trace_context),
        )

    return blueprint


def _raw(event: func.EventHubEvent, index: int) -> RawTwinEvent:
    metadata: dict[str, Any] = dict(event.metadata or {})
    batch = metadata.get("PropertiesArray")
    properties = batch[index] if isinstance(batch, list) else metadata.get("Properties")
    return RawTwinEvent(
        body=event.get_body(),
        properties=dict(properties or {}),
        iothub_metadata=dict(event.iothub_metadata or {}),
        sequence_number=event.sequence_number,
    )
