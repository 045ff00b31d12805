"""The dead-letter queue read without consuming it, and messages held while they are replayed.

Azure Storage peeks at most 32 messages and has no cursor, so a queue longer than that is
read by receiving: each page of up to 32 messages becomes invisible for a short visibility
timeout (so the next receive returns the next ones), and every received message is made
visible again (update_message with visibility 0) when the command ends, also on error or
Ctrl-C. Nothing is deleted except a letter that has just been replayed. Should the CLI die
mid-way, the messages reappear by themselves when the timeout runs out. Receiving raises
each message's dequeue count, which nothing reads on this queue (no trigger consumes it).
When the whole queue fits in one peek, listing only peeks and changes nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from operator_cli.config import StorageConnection
from operator_cli.errors import QueueServiceError
from operator_cli.letters import QueuedLetter, read_letter
from operator_cli.queue_calls import QueueMissing, queue_call
from resilience.queue_port import QueueEncoding
from storage_access.clients import StorageClients
from storage_access.closing import ClosedOnExit

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage
    from azure.storage.queue.aio import QueueClient

T = TypeVar("T")

PEEK_LIMIT = 32
"""Azure Storage returns at most 32 messages per peek or receive."""
LIST_VISIBILITY_SECONDS = 30
REPLAY_VISIBILITY_SECONDS = 120
MAX_SCAN = 5000
"""The most messages a command reads from the queue (show and replay look no further)."""
_RELEASE_CONCURRENCY = 16
_GONE_CODES = frozenset({"MessageNotFound", "PopReceiptMismatch"})
"""Releasing: the message was deleted meanwhile, or another reader holds it now. Both fine."""


@dataclass(frozen=True)
class Listing:
    letters: list[QueuedLetter]
    """Oldest dead-lettered first."""
    maybe_more: bool
    """The limit was reached: more messages may be waiting."""


class DeadLetterQueue(ClosedOnExit):
    """Reads and deletes on one queue with the async SDK client; close it when done."""

    def __init__(self, connection: StorageConnection, name: str, encoding: QueueEncoding) -> None:
        self.name = name
        self.encoding: QueueEncoding = encoding
        self.connection = connection
        self.unreleased = 0
        """Received messages that could not be made visible again (they will be, on time out)."""
        self._client: QueueClient | None = None
        self._storage: StorageClients | None = None

    async def aclose(self) -> None:
        self._client = None
        storage, self._storage = self._storage, None
        if storage is not None:
            await storage.aclose()

    async def browse(self, limit: int) -> Listing:
        """Up to `limit` messages, oldest dead-lettered first, all left in the queue."""
        peeked = await self._peek(min(limit, PEEK_LIMIT))
        if len(peeked) < PEEK_LIMIT or limit <= PEEK_LIMIT:
            letters = [self._letter(message) for message in peeked]
            return Listing(_sorted(letters), maybe_more=len(letters) >= limit)
        letters = []
        async with self.hold(LIST_VISIBILITY_SECONDS) as held:
            async for page in held.pages(limit):
                letters.extend(page)
        return Listing(_sorted(letters), maybe_more=len(letters) >= limit)

    async def find(self, message_id: str) -> QueuedLetter | None:
        """The message with this id among the first MAX_SCAN, left in the queue."""
        for letter in (await self.browse(MAX_SCAN)).letters:
            if letter.message_id == message_id:
                return letter
        return None

    def hold(self, visibility_seconds: int) -> HeldMessages:
        """Receive page by page; on exit every message not deleted is made visible again."""
        return HeldMessages(self, visibility_seconds)

    # --- SDK calls, with their failures mapped to messages free of secrets ------------------

    def _letter(self, message: QueueMessage) -> QueuedLetter:
        return read_letter(
            str(message.id), message.inserted_on, str(message.content or ""), self.encoding
        )

    async def _peek(self, count: int) -> list[QueueMessage]:
        try:
            return list(await self._call(self._queue().peek_messages(max_messages=count)))
        except QueueMissing:
            return []

    async def _receive(self, count: int, visibility_seconds: int) -> list[QueueMessage]:
        pager = self._queue().receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=visibility_seconds
        )
        try:
            return await self._call(_first_page(pager.by_page()))
        except QueueMissing:
            return []

    async def _make_visible(self, message_id: str, pop_receipt: str) -> None:
        await self._call(
            self._queue().update_message(message_id, pop_receipt, visibility_timeout=0)
        )

    async def _delete(self, message_id: str, pop_receipt: str) -> None:
        await self._call(self._queue().delete_message(message_id, pop_receipt))

    def _queue(self) -> QueueClient:
        if self._client is None:
            self._storage = self.connection.clients(timeout_seconds=30, retry_total=1)
            self._client = self._storage.queue(self.name)
        return self._client

    async def _call(self, call: Awaitable[T]) -> T:
        return await queue_call(call, queue=self.name, source=self.connection.source)


async def _first_page(pages: AsyncIterator[AsyncIterator[QueueMessage]]) -> list[QueueMessage]:
    """One receive call: the first page only, so no message is received without being seen."""
    async for page in pages:
        return [message async for message in page]
    return []


def _sorted(letters: list[QueuedLetter]) -> list[QueuedLetter]:
    return sorted(letters, key=lambda letter: letter.sort_key)


class HeldMessages:
    """Messages received for a while: read page by page, deleted one by one, then released."""

    def __init__(self, queue: DeadLetterQueue, visibility_seconds: int) -> None:
        self._queue = queue
        self._visibility = visibility_seconds
        self._receipts: dict[str, str] = {}

    async def __aenter__(self) -> HeldMessages:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.release()

    async def pages(self, limit: int = MAX_SCAN) -> AsyncGenerator[list[QueuedLetter], None]:
        """The messages of each receive not seen before, until the queue or `limit` runs out.

        A page of only known messages means their visibility ran out and the queue came
        round again: that is the end.
        """
        seen: set[str] = set()
        while len(seen) < limit:
            messages = await self._queue._receive(
                min(PEEK_LIMIT, limit - len(seen)), self._visibility
            )
            if not messages:
                return
            fresh = []
            for message in messages:
                message_id = str(message.id)
                self._receipts[message_id] = str(message.pop_receipt)
                if message_id not in seen:
                    seen.add(message_id)
                    fresh.append(self._queue._letter(message))
            if not fresh:
                return
            yield fresh

    async def delete(self, message_id: str) -> None:
        """Delete a held message for good (after its replay was queued)."""
        receipt = self._receipts[message_id]
        await self._queue._delete(message_id, receipt)
        del self._receipts[message_id]

    async def release(self) -> None:
        """Make every held message visible again; count those that could not be (rare)."""
        receipts, self._receipts = self._receipts, {}
        limiter = asyncio.Semaphore(_RELEASE_CONCURRENCY)

        async def release_one(message_id: str, receipt: str) -> bool:
            async with limiter:
                try:
                    await self._queue._make_visible(message_id, receipt)
                except QueueServiceError as exc:
                    return exc.code in _GONE_CODES
                except QueueMissing:
                    pass
                return True

        results = await asyncio.gather(*(release_one(i, r) for i, r in receipts.items()))
        self._queue.unreleased += results.count(False)
