"""Queue triggers: a listener per queue-triggered function, polling Azure Storage (Azurite).

Each listener behaves like the Storage Queues extension's QueueListener + QueueProcessor:

- at start it creates the queue and its `<queue>-poison` queue if they are missing;
- it receives up to host.json `batchSize` messages at a time, each leased (invisible) for
  10 minutes, and invokes the function once per message, concurrently; a new batch is fetched
  once no more than `newBatchThreshold` (default batchSize / 2) messages are still running;
- an empty queue is polled with randomized exponential back-off from 100 ms up to
  `maxPollingInterval`, and polled at once again after a batch, or when an output binding of
  this host added a message to the queue;
- the message text is decoded per `messageEncoding`: base64 text that does not decode goes
  straight to the poison queue, unchanged, without invoking the function;
- success deletes the message; a failure makes it visible again after `visibilityTimeout`,
  unless its dequeue count has reached `maxDequeueCount`: then it is copied to the poison
  queue (same text) and deleted. A message that arrives already dequeued more than
  maxDequeueCount times is poisoned without invoking the function.

The trigger argument is built with azure-functions' QueueMessageInConverter from the data and
trigger metadata the host sends the Python worker (str / bytes annotations get the raw value,
as the worker's generic binding does). Function retry policies do not apply to queue triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.errors import InvocationFailed
from devstack.function_host.host_config import MIN_POLLING_INTERVAL, QueuesOptions
from devstack.function_host.invocation import DeferredValue, Invoker
from devstack.function_host.storage_queues import (
    BadMessageEncoding,
    QueueClients,
    QueueConfigError,
    QueueWatcher,
    StorageConnection,
    decode_message,
    poison_queue_name,
    resolve_connection,
    resolve_queue_name,
)

logger = logging.getLogger("devstack.function_host.queues")

QUEUE_TRIGGER = "queueTrigger"
LEASE_SECONDS = int(os.environ.get("DEVSTACK_QUEUE_LEASE_SECONDS", "600"))
"""How long a received message stays invisible while its function runs (not renewed): ten
minutes, as the Storage Queues extension holds it, so a message whose worker died comes back
after that. Devstack-only: DEVSTACK_QUEUE_LEASE_SECONDS shortens it for crash tests."""
_STOP_POLLING_SECONDS = 1.0
_RELEASE_SECONDS = 1.5


# --- bindings -----------------------------------------------------------------------------------


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


def annotation_problem(spec: FunctionSpec) -> str | None:
    """Why the Python worker would refuse the trigger parameter's annotation, if it would."""
    name = spec.trigger.name
    annotation = spec.annotations.get(name)
    if annotation is None or annotation in (str, bytes):
        return None
    if not isinstance(annotation, type):
        return f"binding {name} has invalid non-type annotation {annotation!r}"
    if QueueMessageInConverter.check_input_type_annotation(annotation):
        return None
    return (
        f'type of {name} binding in function.json "{QUEUE_TRIGGER}" does not match its '
        f'Python annotation "{annotation.__name__}"'
    )


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
    problem = annotation_problem(spec)
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
        generic=spec.annotations.get(spec.trigger.name) in (str, bytes),
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


def _json_time(moment: datetime.datetime | None) -> Datum | None:
    """A DateTimeOffset as the host sends it: Json.NET text like "2024-05-01T10:00:00+00:00"."""
    if moment is None:
        return None
    moment = moment.astimezone(datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return Datum(value=json.dumps(text + "+00:00"), type="json")


def trigger_metadata(
    binding: QueueTriggerBinding, message: QueueMessage, text: str
) -> dict[str, Datum]:
    """The queue trigger's binding data, typed as the host's ToRpc sends it (nulls left out)."""
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    metadata: dict[str, Datum | None] = {
        "QueueTrigger": Datum(value=text, type="string"),
        "Id": Datum(value=message.id, type="string"),
        "PopReceipt": Datum(value=message.pop_receipt, type="string")
        if message.pop_receipt
        else None,
        "DequeueCount": Datum(value=json.dumps(message.dequeue_count or 1), type="json"),
        "InsertionTime": _json_time(message.inserted_on),
        "ExpirationTime": _json_time(message.expires_on),
        "NextVisibleTime": _json_time(message.next_visible_on),
        "sys": Datum(
            value=json.dumps(
                {"MethodName": binding.spec.name, "UtcNow": now, "RandGuid": str(uuid.uuid4())}
            ),
            type="json",
        ),
    }
    return {key: value for key, value in metadata.items() if value is not None}


def trigger_argument(binding: QueueTriggerBinding, message: QueueMessage, body: bytes) -> Any:
    """What the worker passes as the trigger parameter for one message."""
    # Without dataType the extension binds the message as a string: BinaryData.ToString(),
    # UTF-8 with invalid sequences replaced.
    text = body.decode("utf-8", errors="replace")
    data = Datum(value=body, type="bytes") if binding.binary else Datum(value=text, type="string")
    if binding.generic:
        return data.value
    return QueueMessageInConverter.decode(
        data, trigger_metadata=trigger_metadata(binding, message, text)
    )


def _details(message: QueueMessage) -> str:
    inserted = message.inserted_on.isoformat() if message.inserted_on else "(unknown)"
    return f"MessageId: {message.id}, DequeueCount: {message.dequeue_count}, InsertedOn: {inserted}"


# --- the listener -------------------------------------------------------------------------------


class QueueListener:
    """Polls one queue for one function and processes its messages."""

    def __init__(
        self,
        binding: QueueTriggerBinding,
        clients: QueueClients,
        invoker: Invoker,
        options: QueuesOptions,
        watcher: QueueWatcher,
    ) -> None:
        self.binding = binding
        self._clients = clients
        self._invoker = invoker
        self._options = options
        # Set on anything the poll loop waits for: a message added here, a finished message,
        # stop().
        self._wake = watcher.register(binding.connection, binding.queue_name)
        self._stopping = False
        self._in_flight: dict[asyncio.Task[None], QueueMessage] = {}
        self._unreachable_since: float | None = None
        self._fields = {"function": binding.spec.name, "queue": binding.queue_name}

    @property
    def _client(self) -> QueueClient:
        return self._clients.queue(self.binding.connection, self.binding.queue_name)

    async def run(self) -> None:
        """Poll until stop(); never raises (storage errors are logged and retried)."""
        try:
            if await self._prepare():
                logger.info(
                    "queue listener started",
                    extra=self._fields | {"connection": self.binding.connection.setting},
                )
                await self._poll()
        except Exception:
            logger.exception("queue listener crashed; this function gets no more messages")

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        """Stop polling: the poll loop ends at its next wait."""
        self._stopping = True
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop polling, let running messages finish for `grace` s, release the rest."""
        self.request_stop()
        if not self._in_flight:
            return
        tasks = set(self._in_flight)
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if not pending:
            return
        left = [self._in_flight[task] for task in pending if task in self._in_flight]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        logger.warning(
            "stopped with messages still running; making them visible again",
            extra=self._fields | {"count": len(left)},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(self._update(m, 0) for m in left), return_exceptions=True),
                _RELEASE_SECONDS,
            )

    # --- polling ---------------------------------------------------------------------------

    async def _prepare(self) -> bool:
        """Create the queue and its poison queue if missing; False if stopped first."""
        delay = MIN_POLLING_INTERVAL
        while not self._stopping:
            try:
                await self._clients.create_if_missing(
                    self.binding.connection, self.binding.queue_name
                )
                if self.binding.poison_queue is not None:
                    await self._clients.create_if_missing(
                        self.binding.connection, self.binding.poison_queue
                    )
                self._reachable()
                return True
            except AzureError as exc:
                self._unreachable(exc)
            delay = self._next_delay(delay)
            await self._sleep(delay)
        return False

    async def _poll(self) -> None:
        options = self._options
        delay = MIN_POLLING_INTERVAL
        while not self._stopping:
            if len(self._in_flight) > options.fetch_threshold:
                self._wake.clear()
                if len(self._in_flight) > options.fetch_threshold and not self._stopping:
                    await self._wake.wait()
                continue
            # Cleared before receiving: a message added meanwhile cuts the next wait short.
            self._wake.clear()
            try:
                messages = await self._receive(options.batch_size)
            except AzureError as exc:
                self._unreachable(exc)
                delay = self._next_delay(delay)
                await self._sleep(delay)
                continue
            self._reachable()
            if self.stopping:
                # Received while stopping: hand the messages straight back.
                await asyncio.gather(*(self._update(m, 0) for m in messages))
                return
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._in_flight[task] = message
                task.add_done_callback(self._finished)
            if messages:
                delay = MIN_POLLING_INTERVAL
                continue
            await self._sleep(delay)
            delay = self._next_delay(delay)

    async def _receive(self, count: int) -> list[QueueMessage]:
        pages = self._client.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=LEASE_SECONDS
        ).by_page()
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return []
        return [message async for message in page]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()

    def _next_delay(self, delay: float) -> float:
        """The extension's randomized exponential back-off, capped at maxPollingInterval."""
        grown = delay * 2 * random.uniform(0.8, 1.2)
        return max(MIN_POLLING_INTERVAL, min(self._options.max_polling_interval, grown))

    async def _sleep(self, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _unreachable(self, exc: AzureError) -> None:
        loop_time = asyncio.get_running_loop().time()
        summary = (str(exc).splitlines() or [type(exc).__name__])[0]
        if self._unreachable_since is None:
            self._unreachable_since = loop_time
            logger.warning(
                "queue storage unreachable, retrying up to every maxPollingInterval: %s",
                summary,
                extra=self._fields | {"connection": self.binding.connection.setting},
            )
        else:
            logger.debug("queue storage still unreachable: %s", summary, extra=self._fields)

    def _reachable(self) -> None:
        if self._unreachable_since is not None:
            self._unreachable_since = None
            logger.info("queue storage reachable again", extra=self._fields)

    # --- processing ------------------------------------------------------------------------

    async def _process(self, message: QueueMessage) -> None:
        try:
            await self._process_message(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "processing a queue message failed; it becomes visible again when its "
                "lease expires",
                extra=self._fields | {"messageId": message.id},
            )

    async def _process_message(self, message: QueueMessage) -> None:
        binding = self.binding
        options = self._options
        count = message.dequeue_count or 1
        if binding.poison_queue is not None and count > options.max_dequeue_count:
            self._log_poisoning(message)
            await self._poison(message)
            return
        try:
            body = decode_message(str(message.content or ""), options.message_encoding)
        except BadMessageEncoding as exc:
            logger.warning(
                "Message decoding has failed! Check MessageEncoding settings. (%s) Moving "
                "message to queue '%s'.",
                exc,
                binding.poison_queue,
                extra=self._fields | {"messageId": message.id, "messageEncoding": "base64"},
            )
            if binding.poison_queue is not None:
                await self._poison(message)
            else:
                await self._update(message, options.visibility_timeout)
            return
        try:
            await self._invoker.invoke(
                binding.spec,
                DeferredValue(lambda: trigger_argument(binding, message, body)),
                reason=f"New queue message detected on '{binding.queue_name}'.",
                details=_details(message),
            )
        except InvocationFailed:
            if binding.poison_queue is not None and count >= options.max_dequeue_count:
                self._log_poisoning(message)
                await self._poison(message)
            else:
                await self._update(message, options.visibility_timeout)
            return
        await self._storage(
            "deleting the processed message",
            message,
            self._client.delete_message(message.id, message.pop_receipt),
        )

    def _log_poisoning(self, message: QueueMessage) -> None:
        logger.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self._options.max_dequeue_count,
            self.binding.poison_queue,
            extra=self._fields | {"messageId": message.id, "dequeueCount": message.dequeue_count},
        )

    async def _poison(self, message: QueueMessage) -> None:
        """Copy the message text, as received, to the poison queue; then delete the original."""
        assert self.binding.poison_queue is not None
        copied = await self._storage(
            "copying the message to the poison queue",
            message,
            self._clients.send(
                self.binding.connection, self.binding.poison_queue, str(message.content or "")
            ),
        )
        if copied:
            await self._storage(
                "deleting the poisoned message",
                message,
                self._client.delete_message(message.id, message.pop_receipt),
            )

    async def _update(self, message: QueueMessage, visibility_timeout: float) -> None:
        """Release the lease: the message is visible again after `visibility_timeout` s."""
        await self._storage(
            "releasing the message",
            message,
            self._client.update_message(
                message.id,
                pop_receipt=message.pop_receipt,
                visibility_timeout=int(visibility_timeout),
            ),
        )

    async def _storage(self, action: str, message: QueueMessage, call: Awaitable[Any]) -> bool:
        try:
            await call
        except AzureError as exc:
            summary = (str(exc).splitlines() or [type(exc).__name__])[0]
            logger.warning(
                "%s failed (%s); the message becomes visible again when its lease expires",
                action,
                summary,
                extra=self._fields | {"messageId": message.id},
            )
            return False
        return True


class QueueTriggers:
    """Every queue listener of the app: started and stopped with the host."""

    def __init__(
        self,
        functions: Sequence[FunctionSpec],
        environ: Mapping[str, str],
        clients: QueueClients,
        invoker: Invoker,
        options: QueuesOptions,
        watcher: QueueWatcher,
    ) -> None:
        self.listeners = [
            QueueListener(binding, clients, invoker, options, watcher)
            for binding in build_bindings(functions, environ)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(listener.run()) for listener in self.listeners]

    async def stop(self, grace: float) -> None:
        """Stop polling everywhere, then wait for (or release) the messages still running."""
        if not self._tasks:
            return
        for listener in self.listeners:
            listener.request_stop()
        _, pending = await asyncio.wait(self._tasks, timeout=_STOP_POLLING_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await asyncio.gather(*(listener.stop(grace) for listener in self.listeners))
        self._tasks = []
        logger.info("queue listeners stopped", extra={"count": len(self.listeners)})
