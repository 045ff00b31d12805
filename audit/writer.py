"""AuditWriter: what the audit queue's trigger does with each message (no azure.functions here).

A message is a batch, `{"entries": [...]}`, or (the format before batches) one AuditEntry's
JSON; either carries `writeAttempts` once it has been put back. A batch's entries are checked one
by one and appended in order. Outcomes:

- unreadable (not a batch nor an entry, or a batch without one readable entry): logged at
  ERROR with the text (capped) and acknowledged; retrying cannot make it readable. An unreadable
  entry inside a batch is logged the same way and skipped; the others are written;
- stored, or found already stored (a redelivery): acknowledged;
- the table is unavailable: the entry it failed on and the ones after it go back on the audit
  queue as one message (those before it are stored, and re-storing them would be harmless
  anyway), invisible for a delay that doubles per attempt (with jitter, capped at
  `max_delay_seconds`), and the message is acknowledged: a long table outage never drives
  entries into the poison queue;
- the table refuses an entry itself (too large, bad input): logged at ERROR with the whole
  entry and skipped (it would be refused again);
- only when the queue will not take entries back either does handle() raise
  AuditRequeueFailed, so the Functions host retries the whole message through the queue.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from typing import Any, Literal, Protocol

import pydantic_core
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field, ValidationError

from audit.entry import BATCH_FIELD, AuditEntry
from audit.error_log import log_unrecorded
from audit.errors import AuditRequeueFailed, AuditStoreRejected, AuditStoreUnavailable
from audit.port import DelayedSender
from observability import trace_attributes as attr
from observability.flow_spans import TraceContext, flow_span
from resilience.queue_port import QueueError

ATTEMPTS_FIELD = "writeAttempts"
UNREADABLE_TEXT_CHARS = 4000
"""How much of an unreadable message or entry the ERROR line carries."""
_MAX_DOUBLINGS = 30
_tracer = trace.get_tracer("audit")

WriteOutcome = Literal["written", "duplicate", "requeued", "unreadable", "rejected"]
"""Of a whole message, first that applies: "requeued" (entries put back), "rejected" (the table
refused one), "written" (at least one entry new), "duplicate" (every entry already stored),
"unreadable" (nothing readable to store)."""


class AuditStore(Protocol):
    async def append(self, entry: AuditEntry) -> int:
        """Store the entry; how many copies were new. Raises AuditStoreError."""
        ...


class _Attempts(BaseModel):
    write_attempts: int = Field(0, alias=ATTEMPTS_FIELD, ge=0)


class _Batch(BaseModel):
    entries: list[Any] = Field(alias=BATCH_FIELD, min_length=1)
    """Raw: each entry is validated on its own, so one bad entry does not sink the others."""


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
        self,
        body: bytes | str,
        *,
        dequeue_count: int = 1,
        request_id: str | None = None,
        parent: TraceContext | None = None,
    ) -> WriteOutcome:
        """Store the message's entries in order; see the module docstring for the outcomes.

        `parent`: the invocation's trace context, the span's parent."""
        with flow_span(
            _tracer,
            attr.AUDIT_BATCH_SPAN,
            kind=SpanKind.CONSUMER,
            request_id=request_id or "",
            parent=parent,
            attributes={attr.DEQUEUE_COUNT: dequeue_count},
        ) as span:
            outcome = await self._handle(body, dequeue_count, request_id)
            span.set_attribute(attr.AUDIT_RESULT, outcome)
            return outcome

    async def _handle(
        self, body: bytes | str, dequeue_count: int, request_id: str | None
    ) -> WriteOutcome:
        fields: dict[str, Any] = {"dequeueCount": dequeue_count, "invocationId": request_id}
        try:
            parsed: Any = pydantic_core.from_json(body, allow_inf_nan=False)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and BATCH_FIELD in parsed:
            return await self._handle_batch(body, parsed, fields)
        try:
            entry = AuditEntry.model_validate_json(body)
        except ValidationError as exc:
            self._unreadable("unreadable audit message acknowledged", exc, _text(body), fields)
            return "unreadable"
        attempts = _previous_attempts(parsed) + 1
        return await self._write([entry], attempts, fields, batch=False)

    async def _handle_batch(
        self, body: bytes | str, parsed: dict[str, Any], fields: dict[str, Any]
    ) -> WriteOutcome:
        try:
            batch = _Batch.model_validate(parsed)
        except ValidationError as exc:
            self._unreadable("unreadable audit message acknowledged", exc, _text(body), fields)
            return "unreadable"
        entries: list[AuditEntry] = []
        for index, raw in enumerate(batch.entries):
            try:
                entries.append(AuditEntry.model_validate(raw))
            except ValidationError as exc:
                raw_text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
                self._unreadable(
                    "unreadable audit entry skipped", exc, raw_text, {**fields, "index": index}
                )
        return await self._write(entries, _previous_attempts(parsed) + 1, fields, batch=True)

    async def _write(
        self, entries: list[AuditEntry], attempts: int, fields: dict[str, Any], *, batch: bool
    ) -> WriteOutcome:
        """Append the entries in order; at the first table outage, put that entry and the rest
        back on the queue as one message (a batch, unless the message was a bare entry)."""
        if not entries:
            return "unreadable"
        new = rejected = 0
        for index, entry in enumerate(entries):
            try:
                created = await self._store.append(entry)
            except AuditStoreUnavailable as exc:
                await self._requeue(entries[index:], attempts, str(exc), fields, batch=batch)
                return "requeued"
            except AuditStoreRejected as exc:
                log_unrecorded(self._logger, entry, f"the audit table refused it: {exc}", **fields)
                rejected += 1
                continue
            new += bool(created)
            self._logger.debug(
                "audit entry written",
                extra={**fields, "entryId": entry.entry_id, "copiesWritten": created},
            )
        if rejected:
            return "rejected"
        return "written" if new else "duplicate"

    def delay_seconds(self, attempts: int) -> int:
        """The invisibility before attempt `attempts + 1`: backoff with jitter, whole seconds."""
        doublings = max(0, min(attempts - 1, _MAX_DOUBLINGS))
        backoff = min(float(self._max_delay), self._base_delay * (1 << doublings))
        jittered = backoff * (0.5 + 0.5 * self._random())
        return max(1, min(self._max_delay, math.ceil(jittered)))

    async def _requeue(
        self,
        entries: list[AuditEntry],
        attempts: int,
        reason: str,
        fields: dict[str, Any],
        *,
        batch: bool,
    ) -> None:
        delay = self.delay_seconds(attempts)
        first = entries[0].entry_id
        log_fields = {
            **fields,
            "entryId": first,
            "entryIds": [entry.entry_id for entry in entries],
            "writeAttempts": attempts,
        }
        message: dict[str, Any] = (
            {BATCH_FIELD: [entry.to_message() for entry in entries]}
            if batch
            else entries[0].to_message()
        )
        message[ATTEMPTS_FIELD] = attempts
        try:
            await self._queue.send_later(message, delay_seconds=delay)
        except QueueError as exc:
            self._logger.error(
                "audit table and audit queue both unavailable; the queue will redeliver",
                extra={**log_fields, "reason": reason, "queueError": str(exc)},
            )
            more = f" and {len(entries) - 1} after it" if len(entries) > 1 else ""
            raise AuditRequeueFailed(
                f"entry {first[:64]!r}{more}: the table is unavailable ({reason}) and the "
                f"audit queue would not take it back ({exc})"
            ) from exc
        self._logger.warning(
            "audit table unavailable; entry put back on the queue"
            + (f" with the {len(entries) - 1} after it" if len(entries) > 1 else ""),
            extra={**log_fields, "delaySeconds": delay, "reason": reason},
        )

    def _unreadable(
        self, message: str, exc: ValidationError, text: str, fields: dict[str, Any]
    ) -> None:
        self._logger.error(
            "%s: %s",
            message,
            _summary(exc),
            extra={**fields, "problem": _summary(exc), "raw": text[:UNREADABLE_TEXT_CHARS]},
        )


def _previous_attempts(parsed: Any) -> int:
    """The message's writeAttempts; 0 when it has none or it is not a count."""
    try:
        return _Attempts.model_validate(parsed).write_attempts
    except ValidationError:
        return 0


def _text(body: bytes | str) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", "replace")


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more
