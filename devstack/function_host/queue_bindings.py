"""Queue triggers resolved against the app settings, and the trigger argument for one message.

The argument is built with azure-functions' QueueMessageInConverter from the data and trigger
metadata the host sends the Python worker (str / bytes annotations get the raw value, as the
worker's generic binding does).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueMessage

from devstack.function_host.app_loader import QUEUE_TRIGGER, FunctionSpec
from devstack.function_host.storage_queues import (
    QueueConfigError,
    StorageConnection,
    poison_queue_name,
    resolve_connection,
    resolve_queue_name,
)
from devstack.function_host.trigger_annotations import annotation_problem, uses_generic_binding
from devstack.function_host.trigger_data import json_datum, json_time, string_datum, trigger_value

logger = logging.getLogger("devstack.function_host.queues")


@dataclass(frozen=True)
class QueueTriggerBinding:
    """A queue-triggered function with its queue and connection resolved."""

    spec: FunctionSpec
    queue_name: str
    poison_queue: str | None
    connection: StorageConnection
    # dataType binary: the worker gets bytes instead of (UTF-8 decoded) text.
    binary: bool = False
    # The parameter is annotated str or bytes: the worker's generic binding passes the value.
    generic: bool = False


def _binding(spec: FunctionSpec, environ: Mapping[str, str]) -> QueueTriggerBinding | None:
    raw = spec.trigger.raw
    fields = {"function": spec.name}
    try:
        queue_name = resolve_queue_name(str(raw.get("queueName") or ""), environ)
        connection = resolve_connection(raw.get("connection"), environ)
    except QueueConfigError as exc:
        logger.warning(
            "queue trigger of 'Functions.%s' cannot listen: %s. Azure fails to index this "
            "function; here it gets no queue messages (POST /admin/functions/%s still runs it)",
            spec.name,
            exc,
            spec.name,
            extra=fields,
        )
        return None
    problem = annotation_problem(spec, QueueMessageInConverter)
    if problem is not None:
        logger.error(
            "the Python worker cannot load this function (%s); its queue is not listened to",
            problem,
            extra=fields,
        )
        return None
    if spec.retry_policy:
        logger.warning(
            "retry policies do not apply to queue triggers and are ignored: a failed message "
            "is retried through the queue up to maxDequeueCount, then poisoned",
            extra=fields,
        )
    return QueueTriggerBinding(
        spec=spec,
        queue_name=queue_name,
        poison_queue=poison_queue_name(queue_name),
        connection=connection,
        binary=str(raw.get("dataType", "")).lower() == "binary",
        generic=uses_generic_binding(spec),
    )


def build_bindings(
    functions: Sequence[FunctionSpec], environ: Mapping[str, str]
) -> list[QueueTriggerBinding]:
    """Resolve every queueTrigger function; problems are logged, never fatal."""
    bindings = []
    for spec in functions:
        if spec.trigger.type == QUEUE_TRIGGER:
            binding = _binding(spec, environ)
            if binding is not None:
                bindings.append(binding)
    return bindings


# --- trigger arguments --------------------------------------------------------------------------


def trigger_metadata(
    binding: QueueTriggerBinding, message: QueueMessage, text: str
) -> dict[str, Datum]:
    """The queue trigger's binding data, typed as the host's ToRpc sends it (nulls left out)."""
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    metadata: dict[str, Datum | None] = {
        "QueueTrigger": string_datum(text),
        "Id": string_datum(message.id),
        "PopReceipt": string_datum(message.pop_receipt) if message.pop_receipt else None,
        "DequeueCount": json_datum(message.dequeue_count or 1),
        "InsertionTime": json_time(message.inserted_on),
        "ExpirationTime": json_time(message.expires_on),
        "NextVisibleTime": json_time(message.next_visible_on),
        "sys": json_datum(
            {"MethodName": binding.spec.name, "UtcNow": now, "RandGuid": str(uuid.uuid4())}
        ),
    }
    return {key: value for key, value in metadata.items() if value is not None}


def trigger_argument(binding: QueueTriggerBinding, message: QueueMessage, body: bytes) -> Any:
    """What the worker passes as the trigger parameter for one message."""
    # Without dataType the extension binds the message as a string: BinaryData.ToString(),
    # UTF-8 with invalid sequences replaced.
    text = body.decode("utf-8", errors="replace")
    data = Datum(value=body, type="bytes") if binding.binary else string_datum(text)
    return trigger_value(
        QueueMessageInConverter,
        data,
        lambda: trigger_metadata(binding, message, text),
        generic=binding.generic,
    )


def details(message: QueueMessage) -> str:
    """The invocation's trigger details line for one message."""
    inserted = message.inserted_on.isoformat() if message.inserted_on else "(unknown)"
    return f"MessageId: {message.id}, DequeueCount: {message.dequeue_count}, InsertedOn: {inserted}"
