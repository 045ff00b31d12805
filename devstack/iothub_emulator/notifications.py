"""Twin change notifications as IoT Hub routes them to its built-in Event Hub endpoint.

One shape serves both GET /devstack/events and delivery: the Event Hub message as the dev
functions host hands it to an Event Hub trigger (body string, application properties,
system properties, enqueued time, sequence number, offset, partition key).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from .devices import JsonObject

MESSAGE_SCHEMA = "twinChangeNotification"
MESSAGE_SOURCE = "twinChangeEvents"


@dataclass(frozen=True)
class TwinChangeNotification:
    """What one twin write emits, before the hub's event log numbers it."""

    hub_name: str
    device_id: str
    op_type: str
    body: JsonObject
    operation_timestamp: str

    def body_text(self) -> str:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False)

    def to_event(self, *, sequence_number: int, offset: int, enqueued_time: str) -> JsonObject:
        """The message as stored, listed and delivered."""
        application: dict[str, Any] = {
            "hubName": self.hub_name,
            "deviceId": self.device_id,
            "operationTimestamp": self.operation_timestamp,
            "iothub-message-schema": MESSAGE_SCHEMA,
            "opType": self.op_type,
        }
        system = {
            "iothub-message-source": MESSAGE_SOURCE,
            "iothub-connection-device-id": self.device_id,
            "iothub-enqueuedtime": enqueued_time,
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "message-id": str(uuid.uuid4()),
        }
        return {
            "body": self.body_text(),
            "properties": application,
            "systemProperties": system,
            "enqueuedTimeUtc": enqueued_time,
            "sequenceNumber": sequence_number,
            "offset": str(offset),
            "partitionKey": None,
        }
