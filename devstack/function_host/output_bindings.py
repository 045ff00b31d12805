"""Queue output bindings: what a function set, sent to Azure Storage once it has returned.

As in Azure, the Python worker first encodes each `func.Out` value (or the `$return` value of a
queue-bound return) with azure-functions' converters: `Out[str]` / `Out[bytes]` go through the
worker's generic binding (a str or bytes, nothing else), any other annotation through
QueueMessageOutConverter (str, bytes, a QueueMessage or a list of them). The host then adds one
message per value, or one per element of a list, encoded per host.json messageEncoding, and
creates the queue if it is missing. Nothing is sent when the function raised; if sending fails
the invocation fails. Other output binding types are reported, not delivered.
"""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageOutConverter

from devstack.function_host.app_loader import Binding, FunctionSpec
from devstack.function_host.host_config import MessageEncoding
from devstack.function_host.storage_queues import (
    QueueClients,
    QueueConfigError,
    QueueWatcher,
    StorageConnection,
    encode_message,
    resolve_connection,
    resolve_queue_name,
)

logger = logging.getLogger("devstack.function_host.outputs")

QUEUE_OUTPUT = "queue"
HTTP_OUTPUT = "http"
RETURN = "$return"


class OutputBindingError(RuntimeError):
    """An output value could not be encoded or sent; the invocation fails with it."""


@dataclass(frozen=True)
class QueueOutput:
    """A queue output binding resolved against the app settings."""

    binding: str
    queue_name: str
    connection: StorageConnection
    # Out[str] / Out[bytes] (or a str/bytes return annotation): the worker's generic binding.
    generic: bool


def _annotation(spec: FunctionSpec, binding: str) -> Any:
    return spec.annotations.get("return" if binding == RETURN else binding)


def _output_type(spec: FunctionSpec, binding: str) -> tuple[bool, str | None]:
    """(generic, problem): how the worker encodes this output, and why it would not load."""
    annotation = _annotation(spec, binding)
    if annotation is None:
        return False, None
    if binding == RETURN:
        inner = annotation
    elif annotation is func.Out:
        return False, None
    elif typing.get_origin(annotation) is func.Out:
        (inner,) = typing.get_args(annotation)
    else:
        return False, (
            f'binding {binding} is declared to have the "out" direction, but its annotation '
            "in Python is not a subclass of azure.functions.Out"
        )
    if inner in (str, bytes):
        return True, None
    try:
        accepted = bool(QueueMessageOutConverter.check_output_type_annotation(inner))
    except TypeError:
        accepted = False
    if accepted:
        return False, None
    name = getattr(inner, "__name__", repr(inner))
    return False, (
        f'type of {binding} binding in function.json "{QUEUE_OUTPUT}" does not match its '
        f'Python annotation "{name}"'
    )


def _worker_encode(value: Any, generic: bool) -> Datum:
    """What the worker sends the host for an output value (its generic or queue converter)."""
    if generic:
        if isinstance(value, str):
            return Datum(type="string", value=value)
        if isinstance(value, bytes | bytearray):
            return Datum(type="bytes", value=bytes(value))
        raise TypeError(f"{type(value).__name__} for an Out[str] / Out[bytes] binding")
    datum = QueueMessageOutConverter.encode(value, expected_type=None)
    if not isinstance(datum, Datum):
        raise TypeError(type(value).__name__)
    return datum


def queue_messages(datum: Datum) -> list[str | bytes]:
    """The messages the host adds for one encoded value: a JSON array adds one per element."""
    if datum.type in ("string", "bytes"):
        return [datum.value]
    if datum.type == "json":
        parsed = json.loads(datum.value)
        items = parsed if isinstance(parsed, list) else [parsed]
        return [
            item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
            for item in items
        ]
    return []


class OutputBindings:
    """Every function's output bindings, resolved once at start-up."""

    def __init__(
        self,
        functions: Sequence[FunctionSpec],
        environ: Mapping[str, str],
        clients: QueueClients,
        encoding: MessageEncoding,
        watcher: QueueWatcher | None = None,
    ) -> None:
        self._clients = clients
        self._encoding = encoding
        self._watcher = watcher
        self._queues: dict[tuple[str, str], QueueOutput] = {}
        self._unresolved: dict[tuple[str, str], str] = {}
        for spec in functions:
            for binding in spec.bindings:
                if binding.is_output and binding.type == QUEUE_OUTPUT:
                    self._resolve(spec, binding, environ)

    def _resolve(self, spec: FunctionSpec, binding: Binding, environ: Mapping[str, str]) -> None:
        # `output=`, not `binding=`: lines with binding= report what an invocation did.
        fields = {"function": spec.name, "output": binding.name}
        generic, problem = _output_type(spec, binding.name)
        if problem is not None:
            logger.error(
                "the Python worker cannot load this function (%s); in Azure indexing fails",
                problem,
                extra=fields,
            )
        try:
            queue_name = resolve_queue_name(str(binding.raw.get("queueName") or ""), environ)
            connection = resolve_connection(binding.raw.get("connection"), environ)
        except QueueConfigError as exc:
            reason = str(exc)
            logger.warning(
                "queue output %s of 'Functions.%s' cannot be resolved: %s. Azure fails to "
                "index this function; the dev host runs it without delivering this output",
                binding.name,
                spec.name,
                reason,
                extra=fields,
            )
            self._unresolved[(spec.name, binding.name)] = reason
            return
        self._queues[(spec.name, binding.name)] = QueueOutput(
            binding=binding.name, queue_name=queue_name, connection=connection, generic=generic
        )

    def queue_output(self, function: str, binding: str) -> QueueOutput | None:
        return self._queues.get((function, binding))

    async def deliver(
        self, spec: FunctionSpec, return_value: Any, outputs: Mapping[str, Any]
    ) -> None:
        """Send what the function set, binding by binding; OutputBindingError if one fails."""
        for binding in spec.bindings:
            if not binding.is_output or binding.type == HTTP_OUTPUT:
                continue
            value = return_value if binding.name == RETURN else outputs.get(binding.name)
            if value is None:
                continue
            target = self._queues.get((spec.name, binding.name))
            if target is None:
                reason = self._unresolved.get(
                    (spec.name, binding.name),
                    f"the dev host delivers queue output bindings only, not {binding.type!r}",
                )
                logger.info(
                    "output binding set; the dev host does not deliver it",
                    extra={
                        "function": spec.name,
                        "binding": binding.name,
                        "type": binding.type,
                        "reason": reason,
                    },
                )
                continue
            await self._send(spec, target, value)

    async def _send(self, spec: FunctionSpec, target: QueueOutput, value: Any) -> None:
        fields = {"function": spec.name, "binding": target.binding, "queue": target.queue_name}
        try:
            messages = queue_messages(_worker_encode(value, target.generic))
        # azure-functions' own converter raises NotImplementedError for a type it does not take.
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise OutputBindingError(
                f"the Python worker cannot encode the value of output binding {target.binding} "
                f"({type(value).__name__}: {exc or 'unsupported type'}); a queue output takes "
                "str, bytes, func.QueueMessage or a list of str / QueueMessage"
            ) from exc
        for message in messages:
            text = encode_message(message, self._encoding)
            try:
                await self._clients.send(target.connection, target.queue_name, text)
            except AzureError as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise OutputBindingError(
                    f"output binding {target.binding}: adding a message to queue "
                    f"{target.queue_name!r} ({target.connection.setting}) failed: {first_line}"
                ) from exc
        if messages:
            logger.info("queue output sent", extra=fields | {"messages": len(messages)})
            if self._watcher is not None:
                self._watcher.notify(target.connection, target.queue_name)
