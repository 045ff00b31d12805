"""QueuedAuditTrail: the AuditTrail the flows record to, in front of the audit queue.

record() never touches the network: it appends the entry to an in-memory pending deque and
returns, so an allocation never waits for (or fails on) the audit queue. One background flusher
sends pending entries oldest first in batches, one queue message `{"entries": [...]}` per batch
(up to `batch_size` entries and `max_batch_bytes` of JSON), waiting at most
`flush_interval_seconds` for a batch to fill: one queue send, and one writer invocation, per batch
instead of per entry.

The trade-off: an entry is durable once its batch is on the queue, normally within
`flush_interval_seconds` of record(). Until then it is only in this worker's memory, so a hard
crash of the worker in that window (process killed, host lost) loses the entries not yet sent.
A graceful stop (aclose()) flushes them first.

With `wait_until_queued` (what the app uses), record() closes that window: it waits until the
entry's batch is on the queue, the entry is given up (logged), or the queue is found
unavailable, whichever comes first, and at most the send timeout plus the flush interval. With
a flush interval of 0 this is group commit: the first entry goes at once, and the entries
recorded while a send is in flight go together in the next one. An audit queue outage never
holds an allocation up: entries recorded during one return at once and wait in memory.

- when the queue is unavailable (down, timeout), the batch stays at the front of the pending
  deque, in order, and the flusher tries again every `retry_interval_seconds` (one warning per
  outage); flush() tries at once;
- pending entries are bounded by `max_backlog`: when it is full, the newest entry is given up;
- an entry that cannot be queued at all (refused by the queue, backlog full, still pending when
  the trail closes) is logged at ERROR with the whole entry as structured fields and counted in
  `counts.given_up`, so nothing disappears silently. An entry too large for a queue message on
  its own is sent without its details (the ERROR line keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from audit.backlog import Backlog, TrailCounts
from audit.entry import BATCH_FIELD, AuditEntry
from audit.queue import AuditSender
from resilience.queue_port import QueueRejected, QueueUnavailable

__all__ = ["QueuedAuditTrail", "TrailCounts"]

DEFAULT_MAX_BACKLOG = 10_000
DEFAULT_BATCH_SIZE = 25
DEFAULT_MAX_BATCH_BYTES = 45_000
"""UTF-8 bytes of a batch's JSON: 60,000 once base64-encoded, under the queue's 64 KiB."""

_SendOutcome = Literal["sent", "retry", "split", "gone"]
_TOO_LARGE_CODES = {"MessageTooLarge", "RequestBodyTooLarge"}


class QueuedAuditTrail:
    """AuditTrail on a queue (AuditSender): records into memory, a background task sends batches."""

    def __init__(
        self,
        queue: AuditSender,
        *,
        logger: logging.Logger | None = None,
        send_timeout_seconds: float = 2.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        retry_interval_seconds: float = 5.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval_seconds: float = 0.1,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        wait_until_queued: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`clock` and `sleep` time the flush and retry intervals; sends time out on the loop."""
        if send_timeout_seconds <= 0 or retry_interval_seconds < 0 or flush_interval_seconds < 0:
            raise ValueError(
                "send_timeout_seconds must be positive, retry_interval_seconds and "
                "flush_interval_seconds not negative"
            )
        if max_backlog < 1 or batch_size < 1 or max_batch_bytes < 1024:
            raise ValueError(
                "max_backlog and batch_size must be at least 1, max_batch_bytes at least 1024"
            )
        self._queue = queue
        self._logger = logger or logging.getLogger("audit")
        self._timeout = send_timeout_seconds
        self._max_backlog = max_backlog
        self._retry_interval = retry_interval_seconds
        self._batch_size = batch_size
        self._flush_interval = flush_interval_seconds
        self._wait_until_queued = wait_until_queued
        self._clock = clock
        self._sleep = sleep
        self.counts = TrailCounts()
        self._pending = Backlog(
            batch_size=batch_size,
            max_batch_bytes=max_batch_bytes,
            logger=self._logger,
            counts=self.counts,
        )
        self._retry_at = float("-inf")
        self._outage = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()  # one sender at a time: the flusher, flush() or aclose()
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None

    @property
    def backlog(self) -> int:
        """Entries not yet on the queue (including a batch in flight)."""
        return len(self._pending)

    async def record(self, entry: AuditEntry) -> None:
        """Keep the entry for the flusher; never raises. Without `wait_until_queued` it returns
        at once, with no network I/O; with it, once the entry is queued or cannot be yet."""
        appended = False
        settled: asyncio.Future[None] | None = None
        try:
            if len(self._pending) >= self._max_backlog:
                self._pending.give_up(
                    entry, f"the audit backlog is full ({self._max_backlog} entries)"
                )
                return
            self._bind_loop()
            if self._wait_until_queued and not self._outage:
                assert self._loop is not None
                settled = self._loop.create_future()
            self._pending.append(entry, settled)
            appended = True
            self._start_flusher()
        except Exception:
            # A bug here must not fail an allocation; the entry is in the log line or pending.
            self._logger.exception("audit trail failed unexpectedly")
            if not appended:
                self._pending.give_up(entry, "the audit trail failed unexpectedly")
        if settled is not None:
            # Shielded: a caller that stops waiting leaves the entry pending, not cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout + self._flush_interval):
                    await asyncio.shield(settled)

    async def flush(self) -> int:
        """Send every pending entry now, ignoring the flush and retry intervals; how many are
        still pending (the flusher keeps retrying them)."""
        try:
            self._bind_loop()
            async with self._lock:
                await self._send_pending()
            if self._pending:
                self._start_flusher()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._logger.exception("audit trail flush failed unexpectedly")
        return len(self._pending)

    async def aclose(self) -> None:
        """Flush and stop the flusher; whatever still cannot be queued is logged at ERROR,
        entry by entry. (A later record() starts a new flusher.)"""
        try:
            self._bind_loop()
            async with self._lock:
                await self._stop_flusher()
                await self._send_pending()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._logger.exception("audit trail close failed unexpectedly")
        self._pending.give_up_all("still not queued when the trail closed")

    # --- the flusher ------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """Start afresh on a new event loop (a flusher or lock of a finished loop is dead)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._flusher = None
            self._wake = None
            self._pending.forget_waiters()

    def _start_flusher(self) -> None:
        """Make sure the flusher runs; wake it early when a batch is full."""
        self._bind_loop()
        if self._flusher is None or self._flusher.done():
            assert self._loop is not None
            self._flusher = self._loop.create_task(self._flush_in_background())
        elif len(self._pending) >= self._batch_size and self._wake and not self._wake.done():
            self._wake.set_result(None)

    async def _stop_flusher(self) -> None:
        task, self._flusher = self._flusher, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _flush_in_background(self) -> None:
        # Exits only with nothing pending, and without awaiting after the check, so a record()
        # that finds this task done can start another without losing a wake-up.
        while self._pending:
            try:
                wait = self._retry_at - self._clock()
                if wait > 0:
                    await self._sleep(wait)  # the queue is unavailable: one try per interval
                elif len(self._pending) < self._batch_size:
                    await self._pause_for_batch()
                else:
                    await asyncio.sleep(0)  # a full batch goes now, but never without yielding
                async with self._lock:
                    if self._retry_at <= self._clock():  # not failed again in a flush() meanwhile
                        await self._send_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._logger.exception("audit trail flusher failed unexpectedly; retrying")
                self._retry_at = self._clock() + self._retry_interval

    async def _pause_for_batch(self) -> None:
        """Wait the flush interval, or less if a batch fills meanwhile."""
        if self._flush_interval <= 0:
            return
        assert self._loop is not None
        wake = self._wake = self._loop.create_future()
        sleeper = asyncio.ensure_future(self._sleep(self._flush_interval))
        try:
            await asyncio.wait([sleeper, wake], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            self._wake = None

    # --- sending ----------------------------------------------------------------------------

    async def _send_pending(self) -> None:
        """Send pending entries batch by batch, oldest first, until none is left or the queue
        is unavailable (then they stay pending and the retry waits `retry_interval_seconds`)."""
        while self._pending:
            count, messages = self._pending.next_batch()
            if not count:
                continue  # the front entries could not be serialised and were given up
            outcome, refusal = await self._send(messages)
            if outcome == "retry":
                self._retry_at = self._clock() + self._retry_interval
                return
            if outcome == "split":
                self._pending.send_singly(count)
                continue
            entries = self._pending.take(count)
            if outcome == "gone":
                for entry in entries:
                    self._pending.give_up(entry, refusal)
                continue
            self.counts.sent += count
            if self._outage:
                self._outage = False
                self._logger.info("audit queue available again", extra={"backlog": self.backlog})

    async def _send(self, messages: list[dict[str, Any]]) -> tuple[_SendOutcome, str]:
        """Send one batch message; the outcome and, when "gone", why."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._queue.send({BATCH_FIELD: messages})
        except QueueRejected as exc:
            # The queue measured more than we did: one entry per message, then no details.
            if exc.code in _TOO_LARGE_CODES and (len(messages) > 1 or self._pending.shrink_front()):
                return "split", ""
            return "gone", f"the audit queue refused it ({exc.code or exc.status})"
        except (QueueUnavailable, TimeoutError):
            self._failed()
            return "retry", ""
        except Exception:
            self._logger.warning("audit queue send failed unexpectedly", exc_info=True)
            self._failed()
            return "retry", ""
        return "sent", ""

    def _failed(self) -> None:
        self.counts.failed_sends += 1
        self._pending.release_waiters()  # an outage holds no allocation up
        if not self._outage:
            self._outage = True
            self._logger.warning(
                "audit queue unavailable: keeping entries in memory and retrying",
                extra={"maxBacklog": self._max_backlog, "backlog": self.backlog},
            )
