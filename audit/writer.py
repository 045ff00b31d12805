"""AuditWriter: what the audit queue's trigger does with each message (no azure.functions here).

A message is an AuditEntry's JSON, plus `writeAttempts` once it has been put back. Outcomes:

- unreadable (not an entry): logged at ERROR with the text (capped) and acknowledged;
  retrying cannot make it readable;
- stored, or found already stored (a redelivery): acknowledged;
- the table is unavailable: the entry goes back on the audit queue, invisible for a delay that
  doubles per attempt (with jitter, capped at `max_delay_seconds`), and the message is
  acknowledged: a long table outage never drives entries into the poison queue;
- the table refuses the entry itself (too large, bad input): logged at ERROR with the whole
  entry and acknowledged (it would be refused again);
- only when the queue will not take it back either does handle() raise AuditRequeueFailed, so
  the Functions host retries the message through the queue.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from audit.entry import AuditEntry
from audit.error_log import log_unrecorded
from audit.errors import AuditRequeueFailed, AuditStoreRejected, AuditStoreUnavailable
from audit.queue import DelayedSender
from resilience.durable_queue import QueueError

ATTEMPTS_FIELD = "writeAttempts"
UNREADABLE_TEXT_CHARS = 4000
"""How much of an unreadable message the ERROR line carries."""
_MAX_DOUBLINGS = 30

WriteOutcome = Literal["written", "duplicate", "requeued", "unreadable", "rejected"]


class AuditStore(Protocol):
    async def append(self, entry: AuditEntry) -> int:
        """Store the entry; how many copies were new. Raises AuditStoreError."""
        ...


class _Attempts(BaseModel):
    write_attempts: int = Field(0, alias=ATTEMPTS_FIELD, ge=0)


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        queue: DelayedSender,
        *,
        base_delay_seconds: float = 2.0,
        max_delay_seconds: int = 60,
        logger: logging.Logger | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        """random_fraction() in [0, 1) picks the jitter: the delay is 50-100% of the backoff."""
        if base_delay_seconds <= 0 or max_delay_seconds < 1:
            raise ValueError("base_delay_seconds must be positive, max_delay_seconds at least 1")
        self._store = store
        self._queue = queue
        self._base_delay = base_delay_seconds
        self._max_delay = max_delay_seconds
        self._logger = logger or logging.getLogger("audit")
        self._random = random_fraction

    async def handle(
        self, body: bytes | str, *, dequeue_count: int = 1, request_id: str | None = None
    ) -> WriteOutcome:
        fields = {"dequeueCount": dequeue_count, "invocationId": request_id}
        try:
            entry = AuditEntry.model_validate_json(body)
        except ValidationError as exc:
            text = body if isinstance(body, str) else body.decode("utf-8", "replace")
            self._logger.error(
                "unreadable audit message acknowledged: %s",
                _summary(exc),
                extra={**fields, "problem": _summary(exc), "raw": text[:UNREADABLE_TEXT_CHARS]},
            )
            return "unreadable"
        attempts = _previous_attempts(body) + 1
        try:
            created = await self._store.append(entry)
        except AuditStoreUnavailable as exc:
            await self._requeue(entry, attempts, str(exc), fields)
            return "requeued"
        except AuditStoreRejected as exc:
            log_unrecorded(self._logger, entry, f"the audit table refused it: {exc}", **fields)
            return "rejected"
        self._logger.debug(
            "audit entry written",
            extra={**fields, "entryId": entry.entry_id, "copiesWritten": created},
        )
        return "written" if created else "duplicate"

    def delay_seconds(self, attempts: int) -> int:
        """The invisibility before attempt `attempts + 1`: backoff with jitter, whole seconds."""
        doublings = max(0, min(attempts - 1, _MAX_DOUBLINGS))
        backoff = min(float(self._max_delay), self._base_delay * (1 << doublings))
        jittered = backoff * (0.5 + 0.5 * self._random())
        return max(1, min(self._max_delay, math.ceil(jittered)))

    async def _requeue(
        self, entry: AuditEntry, attempts: int, reason: str, fields: dict[str, Any]
    ) -> None:
        delay = self.delay_seconds(attempts)
        log_fields = {**fields, "entryId": entry.entry_id, "writeAttempts": attempts}
        message = {**entry.to_message(), ATTEMPTS_FIELD: attempts}
        try:
            await self._queue.send_later(message, delay_seconds=delay)
        except QueueError as exc:
            self._logger.error(
                "audit table and audit queue both unavailable; the queue will redeliver",
                extra={**log_fields, "reason": reason, "queueError": str(exc)},
            )
            raise AuditRequeueFailed(
                f"entry {entry.entry_id[:64]!r}: the table is unavailable ({reason}) and the "
                f"audit queue would not take it back ({exc})"
            ) from exc
        self._logger.warning(
            "audit table unavailable; entry put back on the queue",
            extra={**log_fields, "delaySeconds": delay, "reason": reason},
        )


def _previous_attempts(body: bytes | str) -> int:
    try:
        return _Attempts.model_validate_json(body).write_attempts
    except ValidationError:
        return 0


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more
