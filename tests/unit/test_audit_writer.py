"""AuditWriter on fakes: store batches (and single entries, the old format) in order, put back
what the table could not take with a growing delay, or log; raise only when the queue will not
take entries back."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from audit import AuditEntry, AuditRequeueFailed, AuditStoreRejected, AuditStoreUnavailable
from audit.trail import QueuedAuditTrail
from audit.writer import UNREADABLE_TEXT_CHARS, AuditWriter
from resilience.queue_port import QueueUnavailable

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
    """Raises `error` for every append once `works_for` appends have succeeded (never if None),
    and `refuse[entry_id]` for those entries."""

    def __init__(
        self,
        error: Exception | None = None,
        *,
        works_for: int = 0,
        refuse: Mapping[str, Exception] | None = None,
    ) -> None:
        self.error = error
        self.works_for = works_for
        self.refuse = dict(refuse or {})
        self.rows: dict[str, AuditEntry] = {}
        self.appended: list[str] = []

    async def append(self, entry: AuditEntry) -> int:
        if entry.entry_id in self.refuse:
            raise self.refuse[entry.entry_id]
        if self.error is not None and len(self.appended) >= self.works_for:
            raise self.error
        self.appended.append(entry.entry_id)
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


# --- batches ------------------------------------------------------------------------------------


def item(n: int, **fields: Any) -> AuditEntry:
    return ENTRY.model_copy(update={"entry_id": f"e{n}", "device_id": f"dev-{n}", **fields})


def batch(entries: list[AuditEntry], **fields: Any) -> bytes:
    return body({"entries": [e.to_message() for e in entries], **fields})


REFUSED = AuditStoreRejected(
    "table audit: 400 (PropertyValueTooLarge)",
    table_name="audit",
    status=400,
    code="PropertyValueTooLarge",
)


async def test_a_batch_is_stored_entry_by_entry_in_order() -> None:
    store, queue = FakeStore(), FakeQueue()
    items = [item(n) for n in range(5)]
    audit = writer(store, queue)
    assert await audit.handle(batch(items)) == "written"
    assert store.appended == ["e0", "e1", "e2", "e3", "e4"]
    assert list(store.rows.values()) == items
    assert queue.sent == []
    assert await audit.handle(batch(items), dequeue_count=2) == "duplicate"
    assert await audit.handle(batch([items[0], item(5)])) == "written", "one new is written"
    assert store.appended[-1] == "e5"


@pytest.mark.parametrize("k", [0, 1, 3, 4])
async def test_a_table_outage_at_entry_k_puts_back_exactly_entries_k_on_as_one_message(
    k: int, caplog: pytest.LogCaptureFixture
) -> None:
    store, queue = FakeStore(error=DOWN, works_for=k), FakeQueue()
    items = [item(n) for n in range(5)]
    audit = writer(store, queue, base_delay_seconds=2, max_delay_seconds=60)
    with caplog.at_level(logging.WARNING, logger="audit.test"):
        assert await audit.handle(batch(items, writeAttempts=2)) == "requeued"
    assert store.appended == [f"e{n}" for n in range(k)]
    [(message, delay)] = queue.sent
    assert message == {"entries": [e.to_message() for e in items[k:]], "writeAttempts": 3}
    assert delay == audit.delay_seconds(3) == 8
    [line] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "audit table unavailable; entry put back on the queue" in line.getMessage()
    assert field(line, "entryIds") == [f"e{n}" for n in range(k, 5)]


async def test_a_put_back_batch_is_stored_once_the_table_is_back() -> None:
    store, queue = FakeStore(error=DOWN, works_for=2), FakeQueue()
    items = [item(n) for n in range(4)]
    audit = writer(store, queue)
    assert await audit.handle(batch(items)) == "requeued"
    [(message, _)] = queue.sent
    assert message["writeAttempts"] == 1
    store.error = None
    assert await audit.handle(body(message)) == "written"
    assert list(store.rows.values()) == items
    assert store.appended == ["e0", "e1", "e2", "e3"], "nothing written twice"


async def test_an_unreadable_entry_in_a_batch_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, queue = FakeStore(), FakeQueue()
    broken = {"entryId": "bad", "action": "not.an.action", "junk": "y" * 10_000}
    message = {"entries": [item(1).to_message(), broken, item(2).to_message()]}
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        assert await writer(store, queue).handle(body(message), dequeue_count=2) == "written"
    assert store.appended == ["e1", "e2"]
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "unreadable audit entry skipped" in line.getMessage()
    assert field(line, "index") == 1
    assert field(line, "dequeueCount") == 2
    raw = json.dumps(broken, separators=(",", ":"))
    assert field(line, "raw") == raw[:UNREADABLE_TEXT_CHARS]
    assert len(field(line, "raw")) == UNREADABLE_TEXT_CHARS


async def test_an_unreadable_entry_is_not_put_back_with_the_rest() -> None:
    store, queue = FakeStore(error=DOWN), FakeQueue()
    message = {"entries": [{"entryId": "bad"}, item(1).to_message(), item(2).to_message()]}
    assert await writer(store, queue).handle(body(message)) == "requeued"
    [(sent, _)] = queue.sent
    assert sent == {"entries": [item(1).to_message(), item(2).to_message()], "writeAttempts": 1}


async def test_an_entry_the_table_refuses_in_a_batch_is_logged_and_the_rest_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, queue = FakeStore(refuse={"e1": REFUSED}), FakeQueue()
    items = [item(0), item(1), item(2)]
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        assert await writer(store, queue).handle(batch(items)) == "rejected"
    assert store.appended == ["e0", "e2"]
    assert queue.sent == []
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert json.loads(field(line, "auditEntry")) == items[1].to_message()


async def test_a_refused_entry_before_an_outage_is_not_put_back() -> None:
    store, queue = FakeStore(error=DOWN, works_for=1, refuse={"e1": REFUSED}), FakeQueue()
    assert await writer(store, queue).handle(batch([item(0), item(1), item(2)])) == "requeued"
    [(sent, _)] = queue.sent
    assert [e["entryId"] for e in sent["entries"]] == ["e2"]


@pytest.mark.parametrize(
    "message",
    [
        {"entries": []},
        {"entries": "e1"},
        {"entries": None},
        {"entries": [{"entryId": "x"}, 7, "text"]},
    ],
)
async def test_a_batch_with_nothing_readable_is_unreadable(
    message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store, queue = FakeStore(), FakeQueue()
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        assert await writer(store, queue).handle(body(message)) == "unreadable"
    assert store.appended == []
    assert queue.sent == []
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_batch_is_raised_back_only_when_the_queue_will_not_take_it() -> None:
    queue = FakeQueue(error=QueueUnavailable("queue audit: down", queue_name="audit"))
    store = FakeStore(error=DOWN, works_for=1)
    audit = writer(store, queue)
    with pytest.raises(AuditRequeueFailed, match=r"'e1' and 1 after it"):
        await audit.handle(batch([item(0), item(1), item(2)]))


async def test_an_unreadable_attempt_count_on_a_batch_counts_as_none() -> None:
    queue = FakeQueue()
    await writer(FakeStore(error=DOWN), queue).handle(batch([item(1)], writeAttempts=-3))
    assert queue.sent[0][0]["writeAttempts"] == 1


async def test_what_the_trail_sends_the_writer_stores_in_order() -> None:
    class Captured:
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def send(self, message: Mapping[str, Any]) -> None:
            self.messages.append(json.dumps(message).encode())

    captured = Captured()
    trail = QueuedAuditTrail(captured, batch_size=10)
    items = [item(n, details={"n": n}) for n in range(25)]
    for one in items:
        await trail.record(one)
    assert await trail.flush() == 0
    assert len(captured.messages) == 3
    store = FakeStore()
    audit = writer(store, FakeQueue())
    for message in captured.messages:
        assert await audit.handle(message) == "written"
    assert list(store.rows.values()) == items
