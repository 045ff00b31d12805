"""QueuedAuditTrail: record() appends in memory (and, with wait_until_queued, waits for the send);
a background flusher sends batches, keeps them in order through an outage, bounds what waits,
and never raises."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import pytest

from audit import AuditEntry, AuditTrail
from audit.trail import DEFAULT_MAX_BATCH_BYTES, QueuedAuditTrail
from resilience.queue_port import MAX_MESSAGE_BYTES, QueueRejected, QueueUnavailable

DOWN = QueueUnavailable("queue audit: down", queue_name="audit")
TOO_LARGE = QueueRejected(
    "queue audit: too large", queue_name="audit", status=None, code="MessageTooLarge"
)


def field(record: logging.LogRecord, name: str) -> Any:
    """A structured field of a log line (logging's `extra`)."""
    return record.__dict__[name]


class FakeQueue:
    """Fails the first `failures` sends (QueueUnavailable unless told otherwise), then works."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or DOWN
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0

    async def send(self, message: Mapping[str, Any]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        self.sent.append(json.loads(json.dumps(message)))

    @property
    def batches(self) -> list[list[str]]:
        """The entry ids of each message sent."""
        return [[e["entryId"] for e in message["entries"]] for message in self.sent]

    @property
    def ids(self) -> list[str]:
        return [entry_id for batch in self.batches for entry_id in batch]


class Hanging(FakeQueue):
    """Every send hangs until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def send(self, message: Mapping[str, Any]) -> None:
        self.attempts += 1
        await self.release.wait()
        self.sent.append(json.loads(json.dumps(message)))


class Clock:
    """Time that passes only when the test says so; sleep() waits until it has."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        until = self.now + seconds
        while self.now < until:  # noqa: ASYNC110  # the test moves the clock, not an event
            await asyncio.sleep(0)


def entry(n: int, **fields: Any) -> AuditEntry:
    return AuditEntry.model_validate(
        {
            "entryId": f"e{n}",
            "at": "2026-11-26T05:13:32.123456Z",
            "action": "allocation.decided",
            "actor": "dps-webhook",
            "outcome": "assigned",
            "deviceId": f"dev-{n}",
            **fields,
        }
    )


def ids(*numbers: int) -> list[str]:
    return [f"e{n}" for n in numbers]


def trail(queue: Any, clock: Clock | None = None, **options: Any) -> QueuedAuditTrail:
    clock = clock or Clock()
    return QueuedAuditTrail(
        queue,
        logger=logging.getLogger("audit.test"),
        clock=clock,
        sleep=clock.sleep,
        retry_interval_seconds=5,
        **options,
    )


async def settle() -> None:
    """Let the background flusher do what it can now."""
    for _ in range(50):
        await asyncio.sleep(0)


async def elapse(clock: Clock, seconds: float) -> None:
    """Let the flusher reach its wait, move the clock, and let it act."""
    await settle()
    clock.now += seconds
    await settle()


async def record_all(audit: QueuedAuditTrail, entries: list[AuditEntry]) -> None:
    for item in entries:
        await audit.record(item)


def without_suspending(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that must finish in one step, never waiting for anything."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("the coroutine suspended: it waited for something")


def given_up_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and hasattr(r, "auditEntry")]


def test_it_is_an_audit_trail() -> None:
    audit: AuditTrail = trail(FakeQueue())
    assert audit is not None


async def test_record_never_waits_for_the_queue_even_when_a_send_hangs() -> None:
    queue, clock = Hanging(), Clock()
    audit = trail(queue, clock)
    without_suspending(audit.record(entry(1)))
    assert queue.attempts == 0, "record() did not send"
    await elapse(clock, 0.1)
    assert queue.attempts == 1, "the flusher is sending, and that send hangs"
    for n in range(2, 40):
        without_suspending(audit.record(entry(n)))
    assert audit.backlog == 39
    queue.release.set()
    await settle()
    assert queue.ids == ids(*range(1, 40))
    assert audit.backlog == 0


async def test_entries_wait_at_most_the_flush_interval_and_go_as_one_message() -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock, flush_interval_seconds=0.1)
    await record_all(audit, [entry(1), entry(2), entry(3)])
    await settle()
    assert queue.sent == [], "waiting for the batch to fill"
    await elapse(clock, 0.1)
    assert queue.sent == [{"entries": [entry(n).to_message() for n in (1, 2, 3)]}]
    assert audit.backlog == 0
    assert audit.counts.sent == 3
    assert clock.sleeps == [0.1]


async def test_a_full_batch_goes_at_once_and_order_holds_across_batches() -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock, batch_size=25)
    await record_all(audit, [entry(n) for n in range(60)])
    await settle()
    assert queue.batches == [ids(*range(25)), ids(*range(25, 50)), ids(*range(50, 60))], (
        "full batches went without waiting the interval, the rest with them"
    )
    assert audit.backlog == 0
    await record_all(audit, [entry(n) for n in range(60, 70)])
    await settle()
    assert len(queue.sent) == 3, "a part batch waits for the interval"
    await elapse(clock, 0.1)
    assert queue.ids == ids(*range(70))


async def test_a_filling_batch_wakes_the_waiting_flusher() -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock, batch_size=5)
    await record_all(audit, [entry(n) for n in range(3)])
    await settle()
    assert queue.sent == []
    await record_all(audit, [entry(3), entry(4)])
    await settle()
    assert queue.batches == [ids(0, 1, 2, 3, 4)]


async def test_batches_stay_under_the_queue_message_limit() -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock)
    items = [entry(n, details={"evidence": "ä" * 5_000}) for n in range(12)]
    await record_all(audit, items)
    await elapse(clock, 0.1)
    assert queue.ids == ids(*range(12))
    assert len(queue.sent) > 1, "twelve 10 kB entries do not fit one message"
    for message in queue.sent:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        assert len(text) <= DEFAULT_MAX_BATCH_BYTES
        assert len(base64.b64encode(text)) <= MAX_MESSAGE_BYTES
    assert [len(batch) for batch in queue.batches] == [4, 4, 4]
    assert audit.counts.details_dropped == 0


async def test_an_entry_too_large_alone_is_queued_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock)
    huge = entry(2, details={"blob": "x" * 50_000})
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await record_all(audit, [entry(1), huge, entry(3)])
        await elapse(clock, 0.1)
    assert queue.ids == ids(1, 2, 3)
    sent = {e["entryId"]: e for message in queue.sent for e in message["entries"]}
    assert "blob" not in sent["e2"]["details"]
    assert "detailsDropped" in sent["e2"]["details"]
    assert sent["e1"] == entry(1).to_message()
    [line] = given_up_lines(caplog)
    assert json.loads(field(line, "auditEntry"))["details"] == {"blob": "x" * 50_000}
    assert audit.counts.details_dropped == 1
    assert audit.counts.given_up == 0


async def test_a_batch_the_queue_finds_too_large_goes_one_entry_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, clock = FakeQueue(failures=2, error=TOO_LARGE), Clock()
    audit = trail(queue, clock)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await record_all(audit, [entry(n, details={"n": n}) for n in range(4)])
        await elapse(clock, 0.1)
    # The batch of 4 is refused; e0 alone is refused too and goes without details.
    assert queue.batches == [["e0"], ["e1"], ["e2"], ["e3"]]
    assert queue.sent[0]["entries"][0]["details"] != {"n": 0}
    assert queue.sent[1]["entries"][0]["details"] == {"n": 1}
    assert [field(line, "entryId") for line in given_up_lines(caplog)] == ["e0"]
    assert audit.counts.details_dropped == 1
    await record_all(audit, [entry(4), entry(5)])
    await elapse(clock, 0.1)
    assert queue.batches[-1] == ["e4", "e5"], "batches again afterwards"


async def test_an_outage_keeps_entries_first_in_order_and_retries_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, clock = FakeQueue(failures=2), Clock()
    audit = trail(queue, clock, batch_size=3)
    with caplog.at_level(logging.INFO, logger="audit.test"):
        await record_all(audit, [entry(n) for n in range(3)])  # a full batch: sent, fails
        await settle()
        assert (queue.attempts, audit.backlog) == (1, 3)
        await record_all(audit, [entry(n) for n in range(3, 10)])  # full batches: no wake-up
        await settle()
        await elapse(clock, 4.9)
        assert queue.attempts == 1, "one try per retry interval, not one per entry or batch"
        await elapse(clock, 0.1)
        assert queue.attempts == 2, "retried after the interval, and failed again"
        await elapse(clock, 5)
    assert queue.batches == [ids(0, 1, 2), ids(3, 4, 5), ids(6, 7, 8), ids(9)]
    assert audit.backlog == 0
    assert audit.counts.failed_sends == 2
    assert audit.counts.sent == 10
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("audit queue unavailable: keeping entries in memory and retrying") == 1
    assert messages.count("audit queue available again") == 1
    assert clock.sleeps[-2:] == [5, 5]


async def test_entries_recorded_during_an_outage_come_after_the_failed_batch() -> None:
    queue = Hanging()
    clock = Clock()
    audit = trail(queue, clock, batch_size=2, send_timeout_seconds=0.05)
    await record_all(audit, [entry(1), entry(2)])
    await asyncio.sleep(0.01)
    await record_all(audit, [entry(3)])  # while the first batch is in flight
    await asyncio.sleep(0.1)  # the send times out
    assert audit.backlog == 3
    assert audit.counts.failed_sends == 1
    queue.release.set()
    await elapse(clock, 5)
    assert queue.batches == [ids(1, 2), ids(3)]


async def test_the_backlog_is_bounded_and_the_newest_entry_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = FakeQueue(failures=1000)
    audit = trail(queue, max_backlog=3)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        for n in range(5):
            without_suspending(audit.record(entry(n, assetId=f"A-{n}", details={"r": "s"})))
    assert audit.backlog == 3
    assert audit.counts.given_up == 2
    lines = given_up_lines(caplog)
    assert [field(line, "entryId") for line in lines] == ["e3", "e4"]
    assert all("backlog is full" in line.getMessage() for line in lines)
    assert field(lines[0], "assetId") == "A-3"
    assert (
        json.loads(field(lines[0], "auditEntry"))
        == entry(3, assetId="A-3", details={"r": "s"}).to_message()
    )
    queue.failures = 0
    assert await audit.flush() == 0
    assert queue.ids == ids(0, 1, 2)


async def test_flush_sends_everything_now_and_says_what_is_left() -> None:
    queue, clock = FakeQueue(failures=2), Clock()
    audit = trail(queue, clock, batch_size=2)
    await record_all(audit, [entry(n) for n in range(5)])
    async with asyncio.timeout(1):  # the virtual clock never moves: waiting would hang
        assert await audit.flush() == 5  # no flush interval waited; the first send fails
        assert await audit.flush() == 5  # the retry interval is ignored: fails again
        assert await audit.flush() == 0
    assert queue.batches == [ids(0, 1), ids(2, 3), ids(4)]
    assert audit.counts.failed_sends == 2


async def test_flush_while_the_flusher_sends_sends_every_entry_once() -> None:
    class Slow(FakeQueue):
        started = 0

        async def send(self, message: Mapping[str, Any]) -> None:
            self.started += 1
            await asyncio.sleep(0.01)
            await super().send(message)

    queue, clock = Slow(), Clock()
    audit = trail(queue, clock, batch_size=3)
    await record_all(audit, [entry(n) for n in range(5)])
    await asyncio.sleep(0.005)
    assert (queue.started, queue.sent) == (1, []), "the flusher is sending the first batch"
    assert await audit.flush() == 0
    assert queue.batches == [ids(0, 1, 2), ids(3, 4)]
    await elapse(clock, 1)
    assert len(queue.sent) == 2


async def test_closing_flushes_then_gives_up_what_is_left_and_stops_the_flusher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, clock = FakeQueue(failures=1000), Clock()
    audit = trail(queue, clock)
    await record_all(audit, [entry(n) for n in range(3)])
    await elapse(clock, 0.1)
    assert queue.attempts == 1
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await audit.aclose()
    assert audit.backlog == 0
    assert queue.attempts == 2, "closing tried once more"
    assert [field(line, "entryId") for line in given_up_lines(caplog)] == ids(0, 1, 2)
    assert all("trail closed" in line.getMessage() for line in given_up_lines(caplog))
    assert audit.counts.given_up == 3
    assert asyncio.all_tasks() == {asyncio.current_task()}, "the flusher stopped"
    await elapse(clock, 60)
    assert queue.attempts == 2


async def test_closing_sends_what_is_pending_without_waiting_the_interval() -> None:
    queue = FakeQueue()
    audit = trail(queue)
    await record_all(audit, [entry(1), entry(2)])
    await audit.aclose()
    assert queue.batches == [ids(1, 2)]
    assert audit.counts.given_up == 0


async def test_entries_the_queue_refuses_are_given_up_and_later_ones_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = QueueRejected(
        "queue audit: 403", queue_name="audit", status=403, code="AuthorizationFailure"
    )
    queue, clock = FakeQueue(failures=1, error=refused), Clock()
    audit = trail(queue, clock)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await record_all(audit, [entry(1), entry(2)])
        await elapse(clock, 0.1)
        await record_all(audit, [entry(3)])
        await elapse(clock, 0.1)
    assert audit.backlog == 0
    assert queue.ids == ["e3"]
    lines = given_up_lines(caplog)
    assert [field(line, "entryId") for line in lines] == ["e1", "e2"]
    assert "AuthorizationFailure" in lines[0].getMessage()
    assert audit.counts.given_up == 2


async def test_an_entry_that_is_not_json_is_given_up_and_the_others_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, clock = FakeQueue(), Clock()
    audit = trail(queue, clock)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await record_all(audit, [entry(1), entry(2, details={"x": object()}), entry(3)])
        await elapse(clock, 0.1)
    assert queue.batches == [ids(1, 3)]
    [line] = given_up_lines(caplog)
    assert field(line, "entryId") == "e2"
    assert "not JSON-serialisable" in line.getMessage()


async def test_a_broken_sender_is_retried_and_does_not_reach_the_caller() -> None:
    queue, clock = FakeQueue(failures=1, error=RuntimeError("bug")), Clock()
    audit = trail(queue, clock)
    await audit.record(entry(1))
    await elapse(clock, 0.1)
    assert audit.backlog == 1
    await elapse(clock, 5)
    assert queue.ids == ["e1"]


async def test_a_hanging_queue_costs_the_flusher_the_send_timeout_not_the_caller() -> None:
    queue = Hanging()
    audit = trail(queue, send_timeout_seconds=0.05, batch_size=1)
    await audit.record(entry(1))
    async with asyncio.timeout(2):
        assert await audit.flush() == 1
    assert audit.counts.failed_sends >= 1
    assert audit.backlog == 1


async def test_a_cancelled_send_keeps_its_batch_first() -> None:
    queue, clock = Hanging(), Clock()
    audit = trail(queue, clock)
    await record_all(audit, [entry(1), entry(2)])
    flushing = asyncio.create_task(audit.flush())
    await asyncio.sleep(0.01)
    assert queue.attempts == 1, "the flush is sending"
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await audit.record(entry(3))
    assert audit.backlog == 3
    queue.release.set()
    assert await audit.flush() == 0
    assert queue.batches == [ids(1, 2, 3)]


# --- wait_until_queued: what the app uses, so that no entry lives only in memory ---------------


async def test_waiting_record_returns_only_once_its_entry_is_on_the_queue() -> None:
    queue = Hanging()
    audit = trail(queue, wait_until_queued=True, flush_interval_seconds=0)
    recording = asyncio.ensure_future(audit.record(entry(1)))
    await settle()
    assert queue.attempts == 1
    assert not recording.done(), "waits for the send in flight"
    queue.release.set()
    await settle()
    assert recording.done()
    assert queue.ids == ids(1)
    assert audit.backlog == 0


async def test_entries_recorded_during_a_send_go_together_in_the_next_one() -> None:
    queue = Hanging()
    audit = trail(queue, wait_until_queued=True, flush_interval_seconds=0)
    first = asyncio.ensure_future(audit.record(entry(1)))
    await settle()
    later = [asyncio.ensure_future(audit.record(entry(n))) for n in range(2, 12)]
    await settle()
    assert queue.attempts == 1, "one send at a time"
    queue.release.set()
    await settle()
    assert queue.batches == [ids(1), ids(*range(2, 12))], "group commit: one message for ten"
    assert first.done()
    assert all(task.done() for task in later)


async def test_an_unavailable_queue_holds_no_allocation_up_and_keeps_the_entries() -> None:
    queue, clock = FakeQueue(failures=1), Clock()
    audit = trail(queue, clock, wait_until_queued=True, flush_interval_seconds=0)
    # Returns on the failure itself, well before its own 2 s cap.
    await asyncio.wait_for(audit.record(entry(1)), timeout=0.5)
    assert queue.attempts == 1
    assert queue.sent == [], "returned after the failed send"
    assert audit.backlog == 1
    without_suspending(audit.record(entry(2)))  # during the outage: no wait at all
    await elapse(clock, 5)
    assert queue.ids == ids(1, 2), "both went, in order, once the queue was back"


async def test_a_waiting_record_of_a_given_up_entry_returns() -> None:
    queue = FakeQueue(error=QueueRejected("refused", queue_name="audit", status=403, code="X"))
    queue.failures = 1
    audit = trail(queue, wait_until_queued=True, flush_interval_seconds=0)
    await asyncio.wait_for(audit.record(entry(1)), timeout=1)
    assert audit.counts.given_up == 1
    assert audit.backlog == 0
