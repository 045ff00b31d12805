"""The audit entries not yet on the queue, and how the next batch message is cut from them.

No I/O and no scheduling: the trail decides when to send and what a send's outcome means; the
backlog keeps the entries in order, each with what a waiting record() waits for, and gives up
(logs at ERROR, counts) what can never be queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from audit.entry import BATCH_FIELD, AuditEntry
from audit.error_log import log_unrecorded

DETAILS_DROPPED = {"detailsDropped": "too large for a queue message; see the error log"}
_ENVELOPE_BYTES = len(json.dumps({BATCH_FIELD: []}, separators=(",", ":")))


@dataclass
class TrailCounts:
    """Since start: entries queued, sends that failed and were retried, entries given up on,
    entries queued without their details."""

    sent: int = 0
    failed_sends: int = 0
    given_up: int = 0
    details_dropped: int = 0


class Backlog:
    def __init__(
        self,
        *,
        batch_size: int,
        max_batch_bytes: int,
        logger: logging.Logger,
        counts: TrailCounts,
    ) -> None:
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        self._logger = logger
        self._counts = counts
        self._entries: deque[AuditEntry] = deque()
        """Oldest first; a batch in flight stays at the front until the queue has taken it,
        so cancelling a send never loses it."""
        self._settled: deque[asyncio.Future[None] | None] = deque()
        """In step with `_entries`: what a waiting record() waits for, done when the entry
        leaves the backlog or the queue is found unavailable."""
        self._send_singly = 0
        """How many entries at the front go one per message (their batch was too large)."""

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: AuditEntry, settled: asyncio.Future[None] | None) -> None:
        self._entries.append(entry)
        self._settled.append(settled)

    def release_waiters(self) -> None:
        """Every waiting record() returns (the queue is unavailable; the entries stay)."""
        for settled in self._settled:
            settle(settled)

    def forget_waiters(self) -> None:
        """On a new event loop: the old loop's futures are awaited by nobody."""
        self.release_waiters()
        self._settled = deque([None] * len(self._entries))

    def next_batch(self) -> tuple[int, list[dict[str, Any]]]:
        """How many front entries the next message carries, and their messages. An entry that
        is not JSON is given up; one too large for a message alone loses its details."""
        limit = 1 if self._send_singly else self._batch_size
        messages: list[dict[str, Any]] = []
        size = _ENVELOPE_BYTES
        while len(messages) < min(limit, len(self._entries)):
            index = len(messages)
            entry = self._entries[index]
            try:
                message = entry.to_message()
                cost = json_bytes(message) + (1 if messages else 0)
            except Exception as exc:  # details a caller filled with something that is not JSON
                self.take(1, at=index)
                self.give_up(entry, f"the entry is not JSON-serialisable ({type(exc).__name__})")
                continue
            if size + cost <= self._max_batch_bytes:
                messages.append(message)
                size += cost
            elif messages:
                break  # the next message starts with it
            elif not self.shrink_front():  # cannot happen with AuditEntry's limits; must not loop
                self.take(1)
                self.give_up(entry, "too large for a queue message even without its details")
        return len(messages), messages

    def send_singly(self, count: int) -> None:
        """The queue refused these front entries as one message: send them one by one."""
        self._send_singly = max(self._send_singly, count)

    def shrink_front(self) -> bool:
        """Drop the front entry's details (the ERROR line keeps the whole entry); False if
        they are dropped already."""
        entry = self._entries[0]
        if entry.details == DETAILS_DROPPED:
            return False
        self._counts.details_dropped += 1
        log_unrecorded(self._logger, entry, "too large for a queue message; queued without details")
        self._entries[0] = entry.model_copy(update={"details": dict(DETAILS_DROPPED)})
        return True

    def take(self, count: int, *, at: int = 0) -> list[AuditEntry]:
        """Remove `count` entries from index `at` (their message is settled, or they are
        given up)."""
        taken = [self._entries[at + n] for n in range(count)]
        for _ in range(count):
            del self._entries[at]
            settle(self._settled[at])
            del self._settled[at]
        if at == 0:  # (entries go one per message only at the front)
            self._send_singly = max(0, self._send_singly - count)
        return taken

    def give_up(self, entry: AuditEntry, reason: str) -> None:
        self._counts.given_up += 1
        log_unrecorded(self._logger, entry, reason)

    def give_up_all(self, reason: str) -> None:
        self._send_singly = 0
        while self._entries:
            self.give_up(self._entries.popleft(), reason)
            settle(self._settled.popleft())


def settle(settled: asyncio.Future[None] | None) -> None:
    if settled is not None and not settled.done():
        settled.set_result(None)


def json_bytes(message: dict[str, Any]) -> int:
    """The message's size as the queue serialises it (compact UTF-8; NaN is not JSON)."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return len(text.encode("utf-8"))
