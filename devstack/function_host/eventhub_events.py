"""The events of a `POST /admin/devstack/eventhubs/{eventHubName}` request, as an Event Hub holds
them: the request body validated, then stamped on acceptance with .NET's time stamps."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from devstack.function_host.json_input import json_object

_ISO_8601 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


class BadEventBatch(ValueError):
    """The request body cannot be delivered; the message names the offending field (400)."""


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
    payload = json_object(
        body,
        BadEventBatch,
        not_json="body is not valid JSON",
        not_object='body must be a JSON object like {"events": [...]}',
    )
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
