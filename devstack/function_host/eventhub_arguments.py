"""The trigger argument of an Event Hub-triggered function for a batch (or a single event): the
data and trigger metadata the Functions host sends the Python worker, decoded with
azure-functions' own EventHubTriggerConverter, so `iothub_metadata`, `metadata`,
`enqueued_time`, `sequence_number` and `offset` come out as in Azure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum

from devstack.function_host.eventhub_events import HubEvent
from devstack.function_host.eventhub_listeners import EventHubListener
from devstack.function_host.trigger_annotations import FunctionLoadError
from devstack.function_host.trigger_data import (
    collection,
    json_datum,
    string_datum,
    trigger_value,
)


def trigger_metadata(listener: EventHubListener, events: Sequence[HubEvent]) -> dict[str, Datum]:
    """The trigger metadata the host sends, each value typed as the host's ToRpc types it.

    Strings go as `string`, string[] and long[] as collections (the worker declares
    TypedDataCollection), everything else (long, DateTime, dictionaries, arrays of them) as
    Json.NET `json`. Null values are left out, as the host does.
    """
    context = listener.partition_context
    metadata = {
        "TriggerPartitionContext": json_datum(context | {"IsCheckpointingAfterInvocation": True}),
        "PartitionContext": json_datum(context),
    }
    if listener.many:
        metadata |= {
            # Null partition keys become empty entries (IncludeEmptyEntriesInMessagePayload).
            "PartitionKeyArray": collection("string", [e.partition_key or "" for e in events]),
            "OffsetArray": collection("string", [str(e.offset_number) for e in events]),
            "OffsetStringArray": collection("string", [e.offset for e in events]),
            "SequenceNumberArray": collection("sint64", [e.sequence_number for e in events]),
            "EnqueuedTimeUtcArray": json_datum([e.enqueued_time.unspecified_kind for e in events]),
            "PropertiesArray": json_datum([e.properties for e in events]),
            "SystemPropertiesArray": json_datum(
                [e.system_properties_for_binding() for e in events]
            ),
        }
        return metadata
    (event,) = events
    if event.partition_key is not None:
        metadata["PartitionKey"] = string_datum(event.partition_key)
    metadata |= {
        "Offset": string_datum(str(event.offset_number)),
        "OffsetString": string_datum(event.offset),
        "SequenceNumber": json_datum(event.sequence_number),
        "EnqueuedTimeUtc": json_datum(event.enqueued_time.unspecified_kind),
        "Properties": json_datum(event.properties),
        "SystemProperties": json_datum(event.system_properties_for_binding()),
    }
    return metadata


def trigger_data(listener: EventHubListener, events: Sequence[HubEvent]) -> Datum:
    """The trigger value: string (bytes with dataType binary), or a collection of them."""
    if listener.many:
        if listener.binary:
            return collection("bytes", [e.body.encode() for e in events])
        return collection("string", [e.body for e in events])
    (event,) = events
    if listener.binary:
        return Datum(value=event.body.encode(), type="bytes")
    return string_datum(event.body)


def trigger_argument(listener: EventHubListener, events: Sequence[HubEvent]) -> Any:
    """What the worker passes as the trigger parameter for this batch (or single event)."""
    if listener.load_error is not None:
        raise FunctionLoadError(listener.spec.name, listener.load_error)
    return trigger_value(
        EventHubTriggerConverter,
        trigger_data(listener, events),
        lambda: trigger_metadata(listener, events),
        generic=listener.generic,
    )
