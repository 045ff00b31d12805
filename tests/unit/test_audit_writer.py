"""AuditWriter on fakes: store, put back with a growing delay, or log; raise only when the
queue will not take an entry back."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from audit import (
    AuditEntry,
    AuditRequeueFailed,
    AuditStoreRejected,
    AuditStoreUnavailable,
    AuditWriter,
)
from audit.writer import UNREADABLE_TEXT_CHARS
from resilience.durable_queue import QueueUnavailable

ENTRY = AuditEntry.model_validate(
    {
        "entryId": "e1",
        "at": "2026-11-26T05:13:32.123456Z",
        "action": "allocation.decided",
        "actor": "dps-webhook",
        "outcome": "assigned",
        "deviceId": "dev-1",
        "assetId": "A-1",
        "details": {"role": "sensor"},
    }
)


def field(record: logging.LogRecord, name: str) -> Any:
    """A structured field of a log line (logging's `extra`)."""
    return record.__dict__[name]


class FakeStore:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.rows: dict[str, AuditEntry] = {}

    async def append(self, entry: AuditEntry) -> int:
        if self.error is not None:
            raise self.error
        if entry.entry_id in self.rows:
            return 0
        self.rows[entry.entry_id] = entry
        return 2


class FakeQueue:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[dict[str, Any], int]] = []

    async def send_later(self, message: Mapping[str, Any], *, delay_seconds: int) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((dict(message), delay_seconds))


DOWN = AuditStoreUnavailable("table audit: ServiceRequestError", table_name="audit")


def body(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message).encode()


def writer(store: FakeStore, queue: FakeQueue, **options: Any) -> AuditWriter:
    return AuditWriter(
        store, queue, logger=logging.getLogger("audit.test"), random_fraction=lambda: 1.0, **options
    )


async def test_an_entry_is_stored_and_a_redelivery_writes_nothing_new() -> None:
    store = FakeStore()
    audit = writer(store, FakeQueue())
    assert await audit.handle(body(ENTRY.to_message())) == "written"
    assert store.rows == {"e1": ENTRY}
    assert await audit.handle(body(ENTRY.to_message()), dequeue_count=2) == "duplicate"


async def test_while_the_table_is_down_entries_go_back_with_a_doubling_capped_delay() -> None:
    queue = FakeQueue()
    audit = writer(FakeStore(error=DOWN), queue, base_delay_seconds=2, max_delay_seconds=60)
    message = ENTRY.to_message()
    delays = []
    for attempt in range(1, 9):
        assert await audit.handle(body(message)) == "requeued"
        message, delay = queue.sent[-1]
        assert message["writeAttempts"] == attempt
        assert AuditEntry.model_validate(message) == ENTRY
        delays.append(delay)
    assert delays == [2, 4, 8, 16, 32, 60, 60, 60]


def test_the_delay_has_jitter_between_half_and_all_of_the_backoff() -> None:
    fractions = iter([0.0, 0.5, 0.999, 0.999])
    audit = AuditWriter(
        FakeStore(), FakeQueue(), base_delay_seconds=2, random_fraction=lambda: next(fractions)
    )
    assert [audit.delay_seconds(4) for _ in range(3)] == [8, 12, 16]
    assert audit.delay_seconds(10_000) <= 60  # no overflow after a week of outage


async def test_an_unreadable_attempt_count_counts_as_none() -> None:
    queue = FakeQueue()
    audit = writer(FakeStore(error=DOWN), queue)
    await audit.handle(body({**ENTRY.to_message(), "writeAttempts": "many"}))
    assert queue.sent[0][0]["writeAttempts"] == 1


async def test_the_writer_raises_only_when_the_queue_will_not_take_the_entry_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = FakeQueue(error=QueueUnavailable("queue audit: down", queue_name="audit"))
    audit = writer(FakeStore(error=DOWN), queue)
    with caplog.at_level(logging.ERROR), pytest.raises(AuditRequeueFailed, match="e1"):
        await audit.handle(body(ENTRY.to_message()))
    assert any("both unavailable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"action": "allocation.decided"}', b"[1, 2]", b"\xff\xfe", "x" * 10_000],
)
async def test_an_unreadable_message_is_logged_and_acknowledged(
    raw: bytes | str, caplog: pytest.LogCaptureFixture
) -> None:
    store, queue = FakeStore(), FakeQueue()
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        assert await writer(store, queue).handle(raw, dequeue_count=3) == "unreadable"
    assert store.rows == {}
    assert queue.sent == []
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "unreadable audit message" in line.getMessage()
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    assert field(line, "raw") == text[:UNREADABLE_TEXT_CHARS]
    assert field(line, "dequeueCount") == 3


async def test_an_entry_the_table_refuses_is_logged_whole_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = AuditStoreRejected(
        "table audit: 400 (PropertyValueTooLarge)",
        table_name="audit",
        status=400,
        code="PropertyValueTooLarge",
    )
    queue = FakeQueue()
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        outcome = await writer(FakeStore(error=refused), queue).handle(body(ENTRY.to_message()))
    assert outcome == "rejected"
    assert queue.sent == []
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert json.loads(field(line, "auditEntry")) == ENTRY.to_message()
    assert "PropertyValueTooLarge" in line.getMessage()
