"""Build non-HTTP trigger arguments with azure-functions' own converters, as the worker does.

The worker turns the host's payload (a `Datum` plus trigger metadata) into Python objects
with the binding's registered InConverter; using the same converters keeps field decoding
(timestamps, dequeue counts, CloudEvents vs Event Grid schema) identical to Azure.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter

from devstack.function_host.app_loader import (
    EVENT_GRID_TRIGGER,
    EVENT_HUB_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionSpec,
)
from devstack.function_host.errors import TriggerInputError
from devstack.function_host.json_input import json_object
from devstack.function_host.trigger_data import collection, json_datum, string_datum

_QUEUE_TTL = datetime.timedelta(days=7)


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def event_grid_event(event: Mapping[str, Any]) -> Any:
    """One Event Grid or CloudEvents event, as func.EventGridEvent or func.CloudEvent."""
    try:
        return EventGridEventInConverter.decode(json_datum(event), trigger_metadata={})
    except ValueError as exc:
        raise TriggerInputError(f"event {event.get('id')!r} cannot be decoded: {exc}") from exc


def queue_message(body: str, *, dequeue_count: int = 1) -> Any:
    """A freshly dequeued azure.functions.queue.QueueMessage carrying `body`."""
    now = datetime.datetime.now(datetime.UTC)
    metadata = {
        "Id": string_datum(str(uuid.uuid4())),
        "DequeueCount": Datum(value=dequeue_count, type="int"),
        "InsertionTime": string_datum(_timestamp(now)),
        "ExpirationTime": string_datum(_timestamp(now + _QUEUE_TTL)),
        "NextVisibleTime": string_datum(_timestamp(now + datetime.timedelta(minutes=10))),
        "PopReceipt": string_datum(uuid.uuid4().hex),
    }
    return QueueMessageInConverter.decode(string_datum(body), trigger_metadata=metadata)


def timer_request(spec: FunctionSpec) -> Any:
    """A TimerRequest for a manual run: not past due, schedule from the binding."""
    info = {
        "Schedule": {"AdjustForDST": True, "Expression": spec.trigger.raw.get("schedule")},
        "ScheduleStatus": None,
        "IsPastDue": False,
    }
    return TimerRequestConverter.decode(json_datum(info), trigger_metadata={})


def event_hub_events(spec: FunctionSpec, body: str) -> Any:
    """One EventHubEvent, or a list of one when the trigger's cardinality is many."""
    now = _timestamp(datetime.datetime.now(datetime.UTC))
    properties = {"EnqueuedTimeUtc": now, "SequenceNumber": 0, "Offset": "0", "PartitionKey": None}
    cardinality = str(spec.trigger.raw.get("cardinality", "one")).lower()
    if cardinality == "many":
        # The host sends a protobuf collection; the converter only reads `.bytes` from it.
        metadata = {"SystemPropertiesArray": json_datum([properties])}
        return EventHubTriggerConverter.decode(
            collection("bytes", [body.encode()]), trigger_metadata=metadata
        )
    metadata = {
        "SystemProperties": json_datum(properties),
        "EnqueuedTimeUtc": string_datum(now),
        "SequenceNumber": Datum(value=0, type="int"),
        "Offset": string_datum("0"),
    }
    return EventHubTriggerConverter.decode(string_datum(body), trigger_metadata=metadata)


def trigger_argument(spec: FunctionSpec, raw_input: str) -> Any:
    """Convert an admin-invoke input string to what the function's trigger parameter expects."""
    annotation = spec.annotations.get(spec.trigger.name)
    trigger_type = spec.trigger.type
    if annotation is str and trigger_type != TIMER_TRIGGER:
        return raw_input
    if annotation is bytes and trigger_type != TIMER_TRIGGER:
        return raw_input.encode()
    if trigger_type == QUEUE_TRIGGER:
        return queue_message(raw_input)
    if trigger_type == TIMER_TRIGGER:
        return timer_request(spec)
    if trigger_type == EVENT_HUB_TRIGGER:
        return event_hub_events(spec, raw_input)
    if trigger_type == EVENT_GRID_TRIGGER:
        event = json_object(
            raw_input,
            TriggerInputError,
            not_json="input is not a JSON event",
            not_object="input must be one Event Grid or CloudEvents event object",
        )
        return event_grid_event(event)
    return raw_input
