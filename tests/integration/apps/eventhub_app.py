"""A v2 FunctionApp with Event Hub-triggered functions, driven by the dev host's Event Hub endpoint.

Every function appends what it received as JSON lines to the file named by the app setting
EH_RECORD_FILE, so a test can assert exactly what the trigger argument held.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any, List  # noqa: UP035 - the worker rejects PEP 585 list[...] annotations

import azure.functions as func

RECORD_FILE = os.environ.get("EH_RECORD_FILE")
if not RECORD_FILE:
    raise RuntimeError("app setting EH_RECORD_FILE is required but not set")

CONNECTION = "IotHubEventsConnection"

_record_lock = threading.Lock()
_attempts: Counter[str] = Counter()


def record(entry: dict[str, Any]) -> None:
    with _record_lock, open(str(RECORD_FILE), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _tz(value: Any) -> str | None:
    return str(value.tzinfo) if value is not None and value.tzinfo is not None else None


def describe(event: func.EventHubEvent) -> dict[str, Any]:
    """Everything a function can read from one EventHubEvent."""
    return {
        "kind": type(event).__name__,
        "body": event.get_body().decode(),
        "iothub_metadata": dict(event.iothub_metadata or {}),
        "metadata_keys": sorted(event.metadata or {}),
        "enqueued_time": _iso(event.enqueued_time),
        "enqueued_tz": _tz(event.enqueued_time),
        "sequence_number": event.sequence_number,
        "offset": event.offset,
        "offset_type": type(event.offset).__name__,
        "partition_key": event.partition_key,
    }


app = func.FunctionApp()


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%TWIN_EVENTS_HUB%",
    connection=CONNECTION,
    cardinality=func.Cardinality.MANY,
)
def twin_changes(events: List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    """Cardinality many: one line per event, tagged with the batch (invocation) it came in."""
    started = time.time()
    time.sleep(0.05)  # long enough for overlapping batches to show in the time stamps
    metadata = events[0].metadata or {}
    for index, event in enumerate(events):
        record(
            {
                "function": "twin_changes",
                "is_list": isinstance(events, list),
                "invocation_id": context.invocation_id,
                "batch_size": len(events),
                "index": index,
                "properties": metadata["PropertiesArray"][index],
                "system_properties": metadata["SystemPropertiesArray"][index],
                "started": started,
                "finished": time.time(),
                **describe(event),
            }
        )


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="Device-Telemetry",
    connection=CONNECTION,
    cardinality=func.Cardinality.ONE,
    consumer_group="%TELEMETRY_CONSUMER_GROUP%",
)
async def single_events(event: func.EventHubEvent, context: func.Context) -> None:
    """Cardinality one: one invocation per event."""
    metadata = event.metadata or {}
    record(
        {
            "function": "single_events",
            "is_list": isinstance(event, list),
            "invocation_id": context.invocation_id,
            "properties": metadata["Properties"],
            "system_properties": metadata["SystemProperties"],
            "partition_context": metadata["PartitionContext"],
            **describe(event),
        }
    )


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="picky-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.ONE,
)
def picky(event: func.EventHubEvent) -> None:
    """No retry policy: fails for one device, later events must still arrive."""
    device_id = (event.metadata or {})["Properties"].get("deviceId")
    if device_id == "fail-me":
        raise ValueError(f"refusing twin change of {device_id}")
    record({"function": "picky", "device_id": device_id})


@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:01")
@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="flaky-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.ONE,
)
def flaky(event: func.EventHubEvent, context: func.Context) -> None:
    """Fixed delay, 2 retries: fails the first 2 attempts for each body, then succeeds."""
    body = event.get_body().decode()
    _attempts[body] += 1
    retry = context.retry_context
    record(
        {
            "function": "flaky",
            "body": body,
            "attempt": _attempts[body],
            "at": time.time(),
            "retry_count": retry.retry_count,
            "max_retry_count": retry.max_retry_count,
            "previous_error": retry.exception.message,
        }
    )
    if _attempts[body] <= 2:
        raise RuntimeError(f"flaky attempt {_attempts[body]} for {body}")


@app.retry(
    strategy="exponential_backoff",
    max_retry_count="2",
    minimum_interval="00:00:00",
    maximum_interval="00:00:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="doomed-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.MANY,
)
def doomed(events: List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    """Exponential backoff, 2 retries: always fails, so the policy gives up after 3 attempts."""
    record(
        {
            "function": "doomed",
            "bodies": [e.get_body().decode() for e in events],
            "retry_count": context.retry_context.retry_count,
        }
    )
    raise RuntimeError("doomed batch")


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="typed-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.ONE,
)
def text_events(event: str) -> None:
    """Annotated str: the worker's generic binding passes the body as text."""
    record({"function": "text_events", "type": type(event).__name__, "value": event})


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="typed-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.MANY,
)
def bytes_batch(events: bytes) -> None:
    """Annotated bytes with cardinality many: the generic binding cannot take a collection."""
    record({"function": "bytes_batch", "type": type(events).__name__})


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="typed-hub",
    connection=CONNECTION,
    cardinality=func.Cardinality.MANY,
)
def pep585_batch(events: list[func.EventHubEvent]) -> None:
    """PEP 585 list[...]: the worker refuses to load it, so it never runs."""
    record({"function": "pep585_batch"})


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="orphan-hub",
    connection="MissingEventHubConnection",
    cardinality=func.Cardinality.ONE,
)
def missing_connection(event: func.EventHubEvent) -> None:
    """Its connection names no app setting: a start-up warning, delivered anyway."""
    record({"function": "missing_connection", "body": event.get_body().decode()})


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="%NOT_DEFINED_HUB%",
    connection=CONNECTION,
    cardinality=func.Cardinality.ONE,
)
def unresolved_hub(event: func.EventHubEvent) -> None:
    """Its event hub name references a missing setting: indexing error, never triggered."""
    record({"function": "unresolved_hub"})
