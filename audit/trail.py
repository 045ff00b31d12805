"""QueuedAuditTrail: the AuditTrail the flows record to, in front of the audit queue.

Recording never fails and never holds a device up for long:

- while the queue takes entries, record() sends each one (within `send_timeout_seconds`), so
  an entry is durable before the flow answers the device;
- when a send fails (queue down, timeout), the entry waits in an in-memory backlog, bounded by
  `max_backlog`, and a background task sends the backlog oldest first every
  `retry_interval_seconds` until it is empty (so it drains even if nothing else is recorded);
  while there is a backlog, record() only appends to it, without touching the network;
  flush() sends it now;
- an entry that cannot be queued at all (refused by the queue, backlog full, still waiting
  when the app stops) is logged at ERROR with the whole entry as structured fields and
  counted in `counts.given_up`, so nothing disappears silently. An entry too large for a queue
  message is sent without its details (the ERROR line keeps them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from audit.entry import AuditEntry
from audit.error_log import log_unrecorded
from audit.queue import AuditSender
from resilience.durable_queue import QueueRejected, QueueUnavailable

DEFAULT_MAX_BACKLOG = 10_000
_SendOutcome = Literal["sent", "retry", "gone"]
_DETAILS_DROPPED = {"detailsDropped": "too large for a queue message; see the error log"}


@dataclass
class TrailCounts:
    """Since start: entries queued, sends that failed and were kept, entries given up on."""

    sent: int = 0
    failed_sends: int = 0
    given_up: int = 0
    details_dropped: int = 0


class QueuedAuditTrail:
    """AuditTrail on a queue (AuditSender), with a bounded backlog for when it is down."""

    def __init__(
        self,
        queue: AuditSender,
        *,
        logger: logging.Logger | None = None,
        send_timeout_seconds: float = 2.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        retry_interval_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if send_timeout_seconds <= 0 or retry_interval_seconds < 0 or max_backlog < 1:
            raise ValueError(
                "send_timeout_seconds must be positive, retry_interval_seconds not negative "
                "and max_backlog at least 1"
            )
        self._queue = queue
        self._logger = logger or logging.getLogger("audit")
        self._timeout = send_timeout_seconds
        self._max_backlog = max_backlog
        self._retry_interval = retry_interval_seconds
        self._clock = clock
        self._sleep = sleep
        self._backlog: deque[AuditEntry] = deque()
        self._retry_at = float("-inf")
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self.counts = TrailCounts()

    @property
    def backlog(self) -> int:
        """Entries waiting for the queue."""
        return len(self._backlog)

    async def record(self, entry: AuditEntry) -> None:
        """Queue the entry, or keep it for later; never raises (except cancellation)."""
        kept = False
        try:
            if self._backlog:
                kept = True
                self._keep(entry)
                self._start_drain()
                return
            outcome, pending = await self._send(entry)
            if outcome == "retry":
                kept = True
                self._retry_at = self._clock() + self._retry_interval
                self._keep(pending)
                self._start_drain()
        except asyncio.CancelledError:
            if not kept:
                # It may have landed anyway: a duplicate is harmless (the writer is idempotent).
                self._keep(entry)
            raise
        except Exception:
            # A bug here must not fail an allocation; the entry is in the log line.
            self._logger.exception("audit trail failed unexpectedly")
            if not kept:
                self._give_up(entry, "the audit trail failed unexpectedly")

    async def flush(self) -> int:
        """Send the backlog now, ignoring the retry interval; the number of entries left
        (they keep being retried in the background)."""
        return await self._flush(keep_retrying=True)

    async def aclose(self) -> None:
        """Flush; whatever still cannot be queued is logged at ERROR, entry by entry."""
        await self._flush(keep_retrying=False)
        while self._backlog:
            self._give_up(self._backlog.popleft(), "still not queued when the app stopped")

    # --- internals --------------------------------------------------------------------------

    def _keep(self, entry: AuditEntry) -> None:
        # The newest entry is the one refused: the head may be in flight in a drain.
        if len(self._backlog) >= self._max_backlog:
            self._give_up(entry, f"the audit backlog is full ({self._max_backlog} entries)")
            return
        if not self._backlog:
            self._logger.warning(
                "audit queue unavailable: keeping entries in memory and retrying",
                extra={"maxBacklog": self._max_backlog},
            )
        self._backlog.append(entry)

    async def _flush(self, *, keep_retrying: bool) -> int:
        try:
            await self._stop_drain()
            if self._backlog:
                self._draining = True
                try:
                    await self._send_backlog()
                finally:
                    self._draining = False
            if keep_retrying and self._backlog:
                self._start_drain()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._logger.exception("audit trail flush failed unexpectedly")
        return len(self._backlog)

    def _start_drain(self) -> None:
        """Start the background drain unless it runs already."""
        if self._draining:
            return
        self._draining = True  # before the task runs, so no second one starts
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_until_empty())

    async def _stop_drain(self) -> None:
        """Cancel the background drain (its entry in flight stays first in the backlog)."""
        task, self._drain_task = self._drain_task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])
        self._draining = False  # also when the task's event loop is gone

    async def _drain_until_empty(self) -> None:
        try:
            while self._backlog:
                wait = self._retry_at - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                await self._send_backlog()
        finally:
            self._draining = False

    async def _send_backlog(self) -> None:
        """Send the backlog oldest first until it is empty or a send fails."""
        sent = 0
        while self._backlog:
            outcome, pending = await self._send(self._backlog[0])
            if outcome == "retry":
                self._backlog[0] = pending
                self._retry_at = self._clock() + self._retry_interval
                return
            self._backlog.popleft()
            sent += 1
        if sent:
            self._logger.info("audit queue available again", extra={"sentFromBacklog": sent})

    async def _send(self, entry: AuditEntry) -> tuple[_SendOutcome, AuditEntry]:
        """The outcome, and the entry to keep when it is "retry" (maybe without details)."""
        try:
            message = entry.to_message()
        except Exception as exc:  # details a caller filled with something that is not JSON
            self._give_up(entry, f"the entry is not JSON-serialisable ({type(exc).__name__})")
            return "gone", entry
        try:
            async with asyncio.timeout(self._timeout):
                await self._queue.send(message)
        except QueueRejected as exc:
            if exc.code == "MessageTooLarge" and entry.details != _DETAILS_DROPPED:
                # Queue the decision without its details; the ERROR line keeps the whole entry.
                self.counts.details_dropped += 1
                log_unrecorded(
                    self._logger, entry, "too large for a queue message; queued without details"
                )
                return await self._send(
                    entry.model_copy(update={"details": dict(_DETAILS_DROPPED)})
                )
            self._give_up(entry, f"the audit queue refused it ({exc.code or exc.status})")
            return "gone", entry
        except (QueueUnavailable, TimeoutError):
            self.counts.failed_sends += 1
            return "retry", entry
        except Exception:
            self.counts.failed_sends += 1
            self._logger.warning("audit queue send failed unexpectedly", exc_info=True)
            return "retry", entry
        self.counts.sent += 1
        return "sent", entry

    def _give_up(self, entry: AuditEntry, reason: str) -> None:
        self.counts.given_up += 1
        log_unrecorded(self._logger, entry, reason)
