"""The durable queue port: what flows need of a queue, and its failures.

Free of SDKs: the Azure Storage adapter (resilience.durable_queue.StorageQueue) implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from app_errors import AppError, DependencyFailed, DependencyUnavailable

QueueEncoding = Literal["base64", "none"]
MAX_MESSAGE_BYTES = 64 * 1024
"""Azure Storage's limit on one message as sent, i.e. after encoding (base64 adds a third)."""


class QueueError(AppError):
    """Base of every durable queue failure. Messages never carry a message body or a key."""

    def __init__(self, message: str, *, queue_name: str) -> None:
        super().__init__(message)
        self.queue_name = queue_name


class QueueUnavailable(QueueError, DependencyUnavailable):
    """Transport error, timeout or 5xx: transient, worth a retry later.

    When the answer was lost the message may still have landed: consumers are idempotent.
    """


class QueueRejected(QueueError, DependencyFailed):
    """The queue will not take this message (too large, not JSON, 4xx): retrying won't help.

    `status` is the service's HTTP status (None when refused before sending), `code` its
    error code (e.g. RequestBodyTooLarge, AuthenticationFailed).
    """

    def __init__(
        self, message: str, *, queue_name: str, status: int | None, code: str | None
    ) -> None:
        super().__init__(message, queue_name=queue_name)
        self.status = status
        self.code = code


class DurableQueue(Protocol):
    """Where work goes that must survive this process: at-least-once delivery to a trigger."""

    async def send(self, message: Mapping[str, Any]) -> None:
        """Enqueue one JSON object; raises QueueUnavailable or QueueRejected."""
        ...


@dataclass(frozen=True)
class QueueBacklog:
    """How much waits on a queue: its approximate count (Azure Storage's own), and when the
    message at its front was enqueued (None when no message is visible)."""

    queue_name: str
    messages: int
    oldest_enqueued_at: datetime | None


class BacklogSource(Protocol):
    async def backlog(self) -> QueueBacklog:
        """Raises QueueUnavailable or QueueRejected."""
        ...
