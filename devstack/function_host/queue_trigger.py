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
import functools
import logging
import os
import random
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.delivery import deliver
from devstack.function_host.host_config import MIN_POLLING_INTERVAL, QueuesOptions
from devstack.function_host.invocation import Invoker
from devstack.function_host.queue_bindings import (
    QueueTriggerBinding,
    build_bindings,
    details,
    trigger_argument,
)
from devstack.function_host.storage_queues import (
    BadMessageEncoding,
    QueueClients,
    QueueWatcher,
    decode_message,
)

logger = logging.getLogger("devstack.function_host.queues")

LEASE_SECONDS = int(os.environ.get("DEVSTACK_QUEUE_LEASE_SECONDS", "600"))
"""How long a received message stays invisible while its function runs (not renewed): ten
minutes, as the Storage Queues extension holds it, so a message whose worker died comes back
after that. Devstack-only: DEVSTACK_QUEUE_LEASE_SECONDS shortens it for crash tests."""
_STOP_POLLING_SECONDS = 1.0
_RELEASE_SECONDS = 1.5


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
        outcome = await deliver(
            self._invoker,
            binding.spec,
            functools.partial(trigger_argument, binding, message, body),
            reason=f"New queue message detected on '{binding.queue_name}'.",
            details=details(message),
        )
        if not outcome.succeeded:
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
