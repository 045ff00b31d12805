"""Durable queues: the port the app writes work to, and its Azure Storage queue adapter.

A message is a JSON object, serialised compactly and encoded as the Functions host reads queue
triggers (host.json extensions.queues.messageEncoding): base64 of its UTF-8 by default, or the
plain text with "none". Logs carry the queue name and message id, never a message body (it may
hold device data).

The queue service closes connections idle past its keep-alive (Azurite: node's 5 s). azure-core's
aiohttp transport calls a request reset by that close a ServiceRequestError, the class its
`retry_connect` retries for any request, reused connection or fresh; so the SDK's retries stay
off and the transport's session (resilience.idle_connections) resends only what a reused
connection's close turned away. On a connection opened for it, a failure is an outage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from resilience.queue_port import (
    MAX_MESSAGE_BYTES,
    QueueBacklog,
    QueueEncoding,
    QueueError,
    QueueRejected,
    QueueUnavailable,
)
from storage_access import auth_failures
from storage_access.clients import StorageClients, storage_clients
from storage_access.closing import ClosedOnExit
from storage_access.connection import StorageAccount, StorageConfigError

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

_logger = logging.getLogger("resilience")
T = TypeVar("T")

_QUEUE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TOO_LARGE_CODES = {"RequestBodyTooLarge", "MessageTooLarge"}


class StorageQueue(ClosedOnExit):
    """DurableQueue on one Azure Storage queue (azure-storage-queue's async client).

    The queue is created on first use if missing (and again if it is deleted later). One
    client, and so one aiohttp connection pool, serves every send; aclose() releases it. The
    SDK's own retries are off: the caller's policy decides, within `timeout_seconds` per send.
    """

    def __init__(
        self,
        storage: StorageClients | StorageAccount | str,
        queue_name: str,
        *,
        encoding: QueueEncoding = "base64",
        timeout_seconds: float = 5,
        owns_storage: bool | None = None,
    ) -> None:
        """`storage`: the account's client factory, or an account or connection string for a
        factory of the queue's own. The queue closes the factory when it owns it: its own, or
        a given one with `owns_storage=True`."""
        if not (3 <= len(queue_name) <= 63 and _QUEUE_NAME.fullmatch(queue_name)):
            raise ValueError(
                f"invalid queue name {queue_name!r}: 3-63 lowercase letters, digits and single "
                "hyphens, starting and ending with a letter or digit"
            )
        if encoding not in get_args(QueueEncoding):
            raise ValueError(f"queue encoding must be 'base64' or 'none', not {encoding!r}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._owns_storage = (
            not isinstance(storage, StorageClients) if owns_storage is None else owns_storage
        )
        self._storage = storage_clients(storage, timeout_seconds=timeout_seconds)
        self.queue_name = queue_name
        self.encoding: QueueEncoding = encoding
        self._timeout = timeout_seconds
        self._client: QueueClient | None = None
        self._queue_exists = False
        self._create_lock = asyncio.Lock()

    async def send(self, message: Mapping[str, Any]) -> None:
        await self._send(message, {})

    async def _send(self, message: Mapping[str, Any], options: dict[str, Any]) -> None:
        """Send with the SDK's send_message `options`; failures logged and typed."""
        try:
            text = self._encoded(message)
            async with asyncio.timeout(self._timeout):
                message_id = await self._send_text(text, options)
        except TimeoutError as exc:
            error = self._timed_out()
            self._log_failure("timeout", str(error))
            raise error from exc
        except QueueError as exc:
            # Our own words (setting, status, error code): never the SDK's text.
            self._log_failure(type(exc).__name__, str(exc))
            raise
        _logger.debug("message queued", extra={"queue": self.queue_name, "messageId": message_id})

    async def backlog(self) -> QueueBacklog:
        """Two reads, no change: the queue's properties and a peek at its front. A missing queue
        holds nothing."""
        client = self._queue_client()
        try:
            async with asyncio.timeout(self._timeout):
                properties = await self._call(client.get_queue_properties())
                front = await self._call(client.peek_messages(max_messages=1))
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except QueueRejected as exc:
            if exc.code == "QueueNotFound":
                return QueueBacklog(self.queue_name, 0, None)
            raise
        oldest = front[0].inserted_on if front else None
        return QueueBacklog(self.queue_name, int(properties.approximate_message_count or 0), oldest)

    async def aclose(self) -> None:
        """Close the client's connections (when the factory is the queue's own); a later send
        opens new ones."""
        self._client = None
        if self._owns_storage:
            await self._storage.aclose()

    def _encoded(self, message: Mapping[str, Any]) -> str:
        try:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            # The exception text names a type or value, not the message: safe to keep.
            raise QueueRejected(
                f"queue {self.queue_name}: message is not JSON-serialisable ({exc})",
                queue_name=self.queue_name,
                status=None,
                code="NotJson",
            ) from None
        if self.encoding == "base64":
            text = base64.b64encode(data).decode("ascii")
            data = text.encode("ascii")
        if len(data) > MAX_MESSAGE_BYTES:
            raise QueueRejected(
                f"queue {self.queue_name}: message is {len(data)} bytes as sent "
                f"({self.encoding} encoding); Azure Storage queue messages are limited to "
                f"64 KiB ({MAX_MESSAGE_BYTES} bytes)",
                queue_name=self.queue_name,
                status=None,
                code="MessageTooLarge",
            )
        return text

    async def _send_text(self, text: str, options: dict[str, Any]) -> str:
        client = self._queue_client()
        if not self._queue_exists:
            await self._create_queue(client)
        try:
            sent = await self._call(client.send_message(text, **options))
        except QueueRejected as exc:
            if exc.status != 404 or exc.code != "QueueNotFound":
                raise
            # Deleted since we created it: a 404 means nothing landed, so sending again is safe.
            self._queue_exists = False
            await self._create_queue(client)
            sent = await self._call(client.send_message(text, **options))
        return str(sent.id)

    async def _create_queue(self, client: QueueClient) -> None:
        async with self._create_lock:
            if self._queue_exists:
                return
            try:
                await self._call(client.create_queue())
            except QueueRejected as exc:
                # Created meanwhile by someone else: 204 (same metadata) or 409 (other metadata).
                if exc.code != "QueueAlreadyExists" and exc.status != 409:
                    raise
            self._queue_exists = True
            _logger.info("queue ready", extra={"queue": self.queue_name})

    def _queue_client(self) -> QueueClient:
        if self._client is None:
            try:
                self._client = self._storage.queue(self.queue_name)
            except (StorageConfigError, ValueError) as exc:
                detail = (
                    str(exc)
                    if isinstance(exc, StorageConfigError)
                    else f"{self._storage.account.setting} is not a usable storage connection"
                )
                raise QueueRejected(
                    f"queue {self.queue_name}: {detail}",
                    queue_name=self.queue_name,
                    status=None,
                    code="BadConnection",
                ) from None
        return self._client

    async def _call(self, call: Awaitable[T]) -> T:
        """Await an SDK call, mapping its failures to QueueUnavailable / QueueRejected."""
        from azure.core.exceptions import (
            AzureError,
            HttpResponseError,
            ServiceRequestTimeoutError,
            ServiceResponseTimeoutError,
        )

        try:
            return await call
        except HttpResponseError as exc:
            if auth_failures.is_token_failure(exc):
                why = auth_failures.token_failure(self._storage.account, exc)
                raise QueueUnavailable(
                    f"queue {self.queue_name}: {why}", queue_name=self.queue_name
                ) from None
            raise self._mapped(exc) from exc
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
            raise self._timed_out() from exc
        except AzureError as exc:
            # ServiceRequestError (refused, reset, DNS) or ServiceResponseError: transport trouble.
            raise QueueUnavailable(
                f"queue {self.queue_name}: {type(exc).__name__} talking to the queue service",
                queue_name=self.queue_name,
            ) from exc

    def _timed_out(self) -> QueueUnavailable:
        return QueueUnavailable(
            f"queue {self.queue_name}: no answer within {self._timeout:g} s",
            queue_name=self.queue_name,
        )

    def _mapped(self, exc: Any) -> QueueError:
        status = int(getattr(exc, "status_code", None) or 0)
        raw_code = getattr(exc, "error_code", None)  # a str, or the SDK's StorageErrorCode enum
        code = str(getattr(raw_code, "value", raw_code)) if raw_code else None
        detail = f"queue {self.queue_name}: the queue service answered {status or 'nothing'}"
        detail += f" ({code})" if code else ""
        if status in (408, 429) or status >= 500 or status == 0:
            return QueueUnavailable(detail, queue_name=self.queue_name)
        if status == 413 or code in _TOO_LARGE_CODES:
            detail += f": messages are limited to 64 KiB ({MAX_MESSAGE_BYTES} bytes) as sent"
        if status in auth_failures.AUTH_STATUSES:
            detail += f": {auth_failures.refusal_hint(self._storage.account, 'queue')}"
        return QueueRejected(detail, queue_name=self.queue_name, status=status, code=code)

    def _log_failure(self, reason: str, detail: str) -> None:
        _logger.warning(
            "queue send failed",
            extra={"queue": self.queue_name, "reason": reason, "detail": detail},
        )
