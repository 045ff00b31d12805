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
import datetime
import json
import logging
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.functions._thirdparty import typing_inspect
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum

from devstack.function_host.app_loader import EVENT_HUB_TRIGGER, FunctionSpec
from devstack.function_host.app_settings import UnresolvedSetting, resolve_setting_references
from devstack.function_host.errors import InvocationFailed, StartupError
from devstack.function_host.invocation import (
    DeferredValue,
    DevRetryContext,
    DevRpcException,
    Invoker,
)

logger = logging.getLogger("devstack.function_host.eventhubs")

DEFAULT_CONSUMER_GROUP = "$Default"
PARTITION_ID = "0"
DEFAULT_NAMESPACE = "localhost"
_ENDPOINT = re.compile(r"(?:^|;)\s*Endpoint\s*=\s*sb://([^/;]+)", re.IGNORECASE)
_ISO_8601 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
# The worker's own copy of typing_inspect (untyped), as it decides what is a generic type.
_is_generic_type: Callable[[object], bool] = typing_inspect.is_generic_type
_TICKS_PER_SECOND = 10_000_000


class BadEventBatch(ValueError):
    """The request body cannot be delivered; the message names the offending field (400)."""


class FunctionLoadError(RuntimeError):
    """What the Python worker raises for a trigger parameter annotation it cannot bind."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")


# --- time stamps as .NET writes them ------------------------------------------------------------


@dataclass(frozen=True)
class Instant:
    """A UTC time with .NET's 100 ns precision (Python datetimes stop at microseconds)."""

    seconds: datetime.datetime
    ticks: int = 0

    @classmethod
    def now(cls) -> Instant:
        moment = datetime.datetime.now(datetime.UTC)
        return cls(moment.replace(microsecond=0), moment.microsecond * 10)

    @classmethod
    def parse(cls, text: str) -> Instant:
        """ISO 8601 with up to 7 fractional digits; no offset means UTC. ValueError if not."""
        match = _ISO_8601.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not an ISO 8601 time like 2026-11-26T05:00:00.000Z")
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        fraction, zone = match.group(7) or "", match.group(8) or "Z"
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
        if zone.upper() != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            moment -= sign * offset
        return cls(moment, int(fraction[:7].ljust(7, "0")))

    def _text(self) -> str:
        text = self.seconds.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{self.ticks:07d}".rstrip("0")
        return f"{text}.{fraction}" if fraction else text

    @property
    def unspecified_kind(self) -> str:
        """A DateTime of kind Unspecified as Json.NET writes it: no zone designator.

        The Event Hubs extension binds `EventData.EnqueuedTime.DateTime`, whose kind is
        Unspecified, so EnqueuedTimeUtc reaches the worker without a trailing Z and
        azure-functions parses it into a naive datetime holding UTC wall-clock time.
        """
        return self._text()

    @property
    def utc_kind(self) -> str:
        """A DateTime of kind Utc (AMQP timestamps such as x-opt-enqueued-time): trailing Z."""
        return f"{self._text()}Z"

    def log_text(self) -> str:
        return f"{self._text()}+00:00"


# --- the request body ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HubEvent:
    """One event as the Event Hub holds it once enqueued."""

    body: str
    properties: dict[str, Any]
    system_properties: dict[str, Any]
    enqueued_time: Instant
    sequence_number: int
    offset: str
    partition_key: str | None

    @property
    def offset_number(self) -> int:
        """The extension's `long.TryParse(OffsetString)`, -1 when it is not a number."""
        text = self.offset.strip()
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else -1

    def system_properties_for_binding(self) -> dict[str, Any]:
        """EventData.SystemProperties plus what the extension adds for the binding data.

        Azure.Messaging.EventHubs lists the AMQP properties section and every message
        annotation, so the broker's x-opt-* annotations appear next to IoT Hub's iothub-*
        ones; the WebJobs extension then adds SequenceNumber, Offset, OffsetString,
        PartitionKey and EnqueuedTimeUtc. Values the sender set win over the x-opt defaults.
        """
        props = dict(self.system_properties)
        props.setdefault("x-opt-sequence-number", self.sequence_number)
        props.setdefault("x-opt-offset", self.offset)
        props.setdefault("x-opt-enqueued-time", self.enqueued_time.utc_kind)
        if self.partition_key is not None:
            props.setdefault("x-opt-partition-key", self.partition_key)
        props["SequenceNumber"] = self.sequence_number
        props["Offset"] = self.offset_number
        props["OffsetString"] = self.offset
        props["PartitionKey"] = self.partition_key
        props["EnqueuedTimeUtc"] = self.enqueued_time.unspecified_kind
        return props


@dataclass(frozen=True)
class SentEvent:
    """One validated entry of the request's `events` array (stamped on acceptance)."""

    body: str
    properties: dict[str, Any]
    system_properties: dict[str, Any]
    enqueued_time: Instant | None
    sequence_number: int | None
    offset: str | None
    partition_key: str | None


def parse_events(body: bytes) -> list[SentEvent]:
    """Validate `{"events": [...]}`; BadEventBatch names the first offending field."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadEventBatch(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadEventBatch('body must be a JSON object like {"events": [...]}')
    events = payload.get("events")
    if not isinstance(events, list):
        raise BadEventBatch("events must be an array of event objects")
    if not events:
        raise BadEventBatch("events must hold at least one event")
    return [_sent_event(f"events[{index}]", raw) for index, raw in enumerate(events)]


def _sent_event(where: str, raw: Any) -> SentEvent:
    if not isinstance(raw, dict):
        raise BadEventBatch(f"{where} must be an object with at least a body")
    body = raw.get("body")
    if not isinstance(body, str):
        raise BadEventBatch(f"{where}.body must be a string (the UTF-8 message body)")
    properties = raw.get("properties")
    system_properties = raw.get("systemProperties")
    for name, value in (("properties", properties), ("systemProperties", system_properties)):
        if value is not None and not isinstance(value, dict):
            raise BadEventBatch(f"{where}.{name} must be an object of name -> value")
    enqueued_raw = raw.get("enqueuedTimeUtc")
    enqueued: Instant | None = None
    if enqueued_raw is not None:
        if not isinstance(enqueued_raw, str):
            raise BadEventBatch(f"{where}.enqueuedTimeUtc must be an ISO 8601 string")
        try:
            enqueued = Instant.parse(enqueued_raw)
        except ValueError as exc:
            raise BadEventBatch(f"{where}.enqueuedTimeUtc: {exc}") from exc
    sequence = raw.get("sequenceNumber")
    if sequence is not None and (
        isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0
    ):
        raise BadEventBatch(f"{where}.sequenceNumber must be a non-negative integer")
    offset = raw.get("offset")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, str | int):
            raise BadEventBatch(f"{where}.offset must be a string (or an integer)")
        offset = str(offset)
    partition_key = raw.get("partitionKey")
    if partition_key is not None and not isinstance(partition_key, str):
        raise BadEventBatch(f"{where}.partitionKey must be a string or null")
    return SentEvent(
        body=body,
        properties=dict(properties or {}),
        system_properties=dict(system_properties or {}),
        enqueued_time=enqueued,
        sequence_number=sequence,
        offset=offset,
        partition_key=partition_key,
    )


# --- app settings -------------------------------------------------------------------------------


def _setting_names(connection: str) -> Iterator[str]:
    yield connection
    yield f"AzureWebJobs{connection}"
    yield f"ConnectionStrings__{connection}"


def connection_setting(connection: str, environ: Mapping[str, str]) -> str | None:
    """The app setting a trigger `connection` resolves to, as the WebJobs SDK looks it up.

    A connection string under the name itself, AzureWebJobs<name> or ConnectionStrings:<name>,
    or an identity-based section such as <name>__fullyQualifiedNamespace. None if missing.
    """
    lowered = {key.lower(): key for key, value in environ.items() if value}
    for candidate in _setting_names(connection):
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    prefix = f"{connection}__".lower()
    return next((key for low, key in sorted(lowered.items()) if low.startswith(prefix)), None)


def _namespace(connection: str, environ: Mapping[str, str]) -> str:
    """The Event Hubs namespace named by the connection setting, for PartitionContext."""
    lowered = {key.lower(): value for key, value in environ.items()}
    qualified = lowered.get(f"{connection}__fullyqualifiednamespace".lower())
    if qualified:
        return qualified
    for candidate in _setting_names(connection):
        match = _ENDPOINT.search(lowered.get(candidate.lower(), ""))
        if match:
            return match.group(1)
    return DEFAULT_NAMESPACE


# --- retry policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """A function retry policy as the worker sends it to the host (whole seconds)."""

    strategy: Literal["fixed_delay", "exponential_backoff"]
    max_retry_count: int
    delay_interval: float = 0.0
    minimum_interval: float = 0.0
    maximum_interval: float = 0.0

    def allows(self, retry_count: int) -> bool:
        """Whether retry number `retry_count` (1-based) may run; -1 retries forever."""
        return self.max_retry_count < 0 or retry_count <= self.max_retry_count

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before retry number `retry_count` (1-based)."""
        if self.strategy == "fixed_delay":
            return self.delay_interval
        grown = self.minimum_interval * 2.0 ** min(retry_count - 1, 32)
        return min(self.maximum_interval, grown)


def _interval(function_name: str, setting: str, value: Any) -> float:
    """The worker's convert_to_seconds: time.strptime(value, '%H:%M:%S')."""
    try:
        parsed = datetime.datetime.strptime(str(value), "%H:%M:%S")
    except ValueError:
        raise StartupError(
            f"function {function_name!r}: retry {setting} must look like HH:MM:SS "
            f"(the worker parses it with '%H:%M:%S'), found {value!r}"
        ) from None
    return float(parsed.hour * 3600 + parsed.minute * 60 + parsed.second)


def parse_retry_policy(
    function_name: str, settings: Mapping[str, Any] | None
) -> RetryPolicy | None:
    """The `@app.retry(...)` setting; anything the worker cannot index is a StartupError."""
    if not settings:
        return None
    strategy = settings.get("strategy")
    try:
        max_retry_count = int(settings.get("max_retry_count"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StartupError(
            f"function {function_name!r}: retry max_retry_count must be an integer, "
            f"found {settings.get('max_retry_count')!r}"
        ) from None
    if max_retry_count < -1:
        raise StartupError(
            f"function {function_name!r}: retry max_retry_count must be -1 (forever) or more"
        )
    if strategy == "fixed_delay":
        return RetryPolicy(
            strategy="fixed_delay",
            max_retry_count=max_retry_count,
            delay_interval=_interval(
                function_name, "delay_interval", settings.get("delay_interval")
            ),
        )
    if strategy == "exponential_backoff":
        minimum = _interval(function_name, "minimum_interval", settings.get("minimum_interval"))
        maximum = _interval(function_name, "maximum_interval", settings.get("maximum_interval"))
        if maximum < minimum:
            raise StartupError(
                f"function {function_name!r}: retry maximum_interval is below minimum_interval"
            )
        return RetryPolicy(
            strategy="exponential_backoff",
            max_retry_count=max_retry_count,
            minimum_interval=minimum,
            maximum_interval=maximum,
        )
    raise StartupError(
        f"function {function_name!r}: retry strategy must be 'fixed_delay' or "
        f"'exponential_backoff', found {strategy!r}"
    )


# --- listeners ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventHubListener:
    """An Event Hub-triggered function with its binding resolved against the app settings."""

    spec: FunctionSpec
    event_hub_name: str
    many: bool
    binary: bool
    consumer_group: str
    namespace: str
    retry: RetryPolicy | None = None
    # The trigger parameter is annotated str or bytes: the worker's "generic" binding.
    generic: bool = False
    # Why the worker would refuse to load the function (it then fails every invocation).
    load_error: str | None = None

    @property
    def partition_context(self) -> dict[str, Any]:
        return {
            "FullyQualifiedNamespace": self.namespace,
            "EventHubName": self.event_hub_name,
            "ConsumerGroup": self.consumer_group,
            "PartitionId": PARTITION_ID,
        }


def annotation_problem(spec: FunctionSpec) -> str | None:
    """Why the Python worker would reject the trigger parameter's annotation, if it would.

    Mirrors the worker's Registry: str/bytes use the generic binding; any other annotation
    must be a class or a typing generic accepted by EventHubTriggerConverter. PEP 585
    `list[func.EventHubEvent]` is neither (azure-functions-python-worker issue #1034).
    """
    name = spec.trigger.name
    if name not in spec.annotations:
        return None
    annotation = spec.annotations[name]
    if annotation in (str, bytes):
        return None
    if not isinstance(annotation, type) and not _is_generic_type(annotation):
        return f"binding {name} has invalid non-type annotation {annotation!r}"
    try:
        accepted = bool(EventHubTriggerConverter.check_input_type_annotation(annotation))
    except TypeError as exc:
        return f"{type(exc).__name__}: {exc}"
    if accepted:
        return None
    type_name = getattr(annotation, "__name__", repr(annotation))
    return (
        f'type of {name} binding in function.json "{EVENT_HUB_TRIGGER}" does not match '
        f'its Python annotation "{type_name}"'
    )


def _listener(spec: FunctionSpec, environ: Mapping[str, str]) -> EventHubListener | None:
    raw = spec.trigger.raw
    fields = {"function": spec.name}
    try:
        hub = resolve_setting_references(str(raw.get("eventHubName") or ""), environ)
        group = resolve_setting_references(
            str(raw.get("consumerGroup") or DEFAULT_CONSUMER_GROUP), environ
        )
    except UnresolvedSetting as exc:
        logger.error(
            "Error indexing method 'Functions.%s': %s; the function gets no events",
            spec.name,
            exc,
            extra=fields,
        )
        return None
    if not hub:
        logger.error(
            "eventHubTrigger without eventHubName; the function gets no events", extra=fields
        )
        return None
    connection = str(raw.get("connection") or "")
    if not connection or connection_setting(connection, environ) is None:
        logger.warning(
            "Event Hub trigger connection %r names no app setting: Core Tools and Azure fail "
            "to start this listener (define %s, or %s__fullyQualifiedNamespace, in "
            "local.settings.json Values); the dev host delivers anyway",
            connection,
            connection or "<connection>",
            connection or "<connection>",
            extra=fields,
        )
    problem = annotation_problem(spec)
    if problem is not None:
        logger.error(
            "the Python worker cannot load this function (%s); in Azure indexing the app "
            "fails, here every Event Hub invocation of it fails",
            problem,
            extra=fields,
        )
    annotation = spec.annotations.get(spec.trigger.name)
    listener = EventHubListener(
        spec=spec,
        event_hub_name=hub,
        many=str(raw.get("cardinality", "one")).lower() == "many",
        binary=str(raw.get("dataType", "")).lower() == "binary",
        consumer_group=group,
        namespace=_namespace(connection, environ) if connection else DEFAULT_NAMESPACE,
        retry=parse_retry_policy(spec.name, spec.retry_policy),
        generic=problem is None and annotation in (str, bytes),
        load_error=problem,
    )
    if listener.retry is not None and listener.retry.max_retry_count < 0:
        logger.warning(
            "retry policy max_retry_count -1 retries a failing batch forever; the sender's "
            "request waits until the function succeeds",
            extra=fields,
        )
    return listener


def build_listeners(
    functions: Sequence[FunctionSpec], environ: Mapping[str, str]
) -> list[EventHubListener]:
    """Resolve every eventHubTrigger function; problems are logged, never fatal here."""
    listeners = []
    for spec in functions:
        if spec.trigger.type != EVENT_HUB_TRIGGER:
            continue
        listener = _listener(spec, environ)
        if listener is not None:
            listeners.append(listener)
    return listeners


# --- trigger arguments --------------------------------------------------------------------------


def _json(value: Any) -> Datum:
    return Datum(value=json.dumps(value), type="json")


def _string(value: str) -> Datum:
    return Datum(value=value, type="string")


def _collection(kind: Literal["string", "bytes", "sint64"], values: list[Any]) -> Datum:
    """A protobuf Collection* message: the converter and Datum read `.string` / `.bytes`."""
    return Datum(value=types.SimpleNamespace(**{kind: values}), type=f"collection_{kind}")


def trigger_metadata(listener: EventHubListener, events: Sequence[HubEvent]) -> dict[str, Datum]:
    """The trigger metadata the host sends, each value typed as the host's ToRpc types it.

    Strings go as `string`, string[] and long[] as collections (the worker declares
    TypedDataCollection), everything else (long, DateTime, dictionaries, arrays of them) as
    Json.NET `json`. Null values are left out, as the host does.
    """
    context = listener.partition_context
    metadata = {
        "TriggerPartitionContext": _json(context | {"IsCheckpointingAfterInvocation": True}),
        "PartitionContext": _json(context),
    }
    if listener.many:
        metadata |= {
            # Null partition keys become empty entries (IncludeEmptyEntriesInMessagePayload).
            "PartitionKeyArray": _collection("string", [e.partition_key or "" for e in events]),
            "OffsetArray": _collection("string", [str(e.offset_number) for e in events]),
            "OffsetStringArray": _collection("string", [e.offset for e in events]),
            "SequenceNumberArray": _collection("sint64", [e.sequence_number for e in events]),
            "EnqueuedTimeUtcArray": _json([e.enqueued_time.unspecified_kind for e in events]),
            "PropertiesArray": _json([e.properties for e in events]),
            "SystemPropertiesArray": _json([e.system_properties_for_binding() for e in events]),
        }
        return metadata
    (event,) = events
    if event.partition_key is not None:
        metadata["PartitionKey"] = _string(event.partition_key)
    metadata |= {
        "Offset": _string(str(event.offset_number)),
        "OffsetString": _string(event.offset),
        "SequenceNumber": _json(event.sequence_number),
        "EnqueuedTimeUtc": _json(event.enqueued_time.unspecified_kind),
        "Properties": _json(event.properties),
        "SystemProperties": _json(event.system_properties_for_binding()),
    }
    return metadata


def trigger_data(listener: EventHubListener, events: Sequence[HubEvent]) -> Datum:
    """The trigger value: string (bytes with dataType binary), or a collection of them."""
    if listener.many:
        if listener.binary:
            return _collection("bytes", [e.body.encode() for e in events])
        return _collection("string", [e.body for e in events])
    (event,) = events
    if listener.binary:
        return Datum(value=event.body.encode(), type="bytes")
    return _string(event.body)


def _generic_decode(data: Datum) -> Any:
    """The worker's GenericBinding.decode, used for str/bytes annotations."""
    if data.type in ("string", "bytes", "json"):
        return data.value
    raise ValueError(f'unexpected type of data received for the "generic" binding : {data.type!r}')


def trigger_argument(listener: EventHubListener, events: Sequence[HubEvent]) -> Any:
    """What the worker passes as the trigger parameter for this batch (or single event)."""
    if listener.load_error is not None:
        raise FunctionLoadError(listener.spec.name, listener.load_error)
    data = trigger_data(listener, events)
    if listener.generic:
        return _generic_decode(data)
    return EventHubTriggerConverter.decode(
        data, trigger_metadata=trigger_metadata(listener, events)
    )


# --- delivery -----------------------------------------------------------------------------------


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


def _timespan(seconds: float) -> str:
    """A delay as .NET prints a TimeSpan: 00:00:01, 00:00:00.5000000."""
    whole, fraction = divmod(round(seconds * _TICKS_PER_SECOND), _TICKS_PER_SECOND)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}.{fraction:07d}" if fraction else text


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
                succeeded, attempts = await self._invoke_with_retries(listener, batch)
                result.invocations += 1
                result.attempts += attempts
                result.failed += 0 if succeeded else 1
        return result

    async def _invoke_with_retries(
        self, listener: EventHubListener, batch: list[HubEvent]
    ) -> tuple[bool, int]:
        """Invoke until success or the retry policy gives up; (succeeded, attempts)."""
        policy = listener.retry
        retry_context: DevRetryContext | None = None
        attempt = 0
        trace_parent = None if listener.many else batch[0].properties.get("Diagnostic-Id")
        while True:
            attempt += 1
            try:
                await self._invoker.invoke(
                    listener.spec,
                    DeferredValue(lambda: trigger_argument(listener, batch)),
                    reason="(null)",
                    trace_parent=trace_parent if isinstance(trace_parent, str) else None,
                    retry_context=retry_context,
                    details=_trigger_details(batch),
                )
                return True, attempt
            except InvocationFailed as exc:
                retry_count = attempt  # the number of the retry that would come next
                if policy is None or not policy.allows(retry_count):
                    self._log_given_up(listener, batch, attempt, policy)
                    return False, attempt
                delay = policy.delay(retry_count)
                logger.info(
                    "Waiting for `%s` before retrying function execution. Next attempt: '%d'. "
                    "Max retry count: '%d'",
                    _timespan(delay),
                    retry_count,
                    policy.max_retry_count,
                    extra={"function": listener.spec.name},
                )
                retry_context = DevRetryContext(
                    retry_count=retry_count,
                    max_retry_count=policy.max_retry_count,
                    exception=DevRpcException.from_error(exc.error),
                )
                await asyncio.sleep(delay)

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
