"""QueuedAuditTrail: queue when it can, keep a bounded backlog when it cannot, never raise."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from audit import AuditEntry, AuditTrail, QueuedAuditTrail
from resilience.durable_queue import QueueRejected, QueueUnavailable


def field(record: logging.LogRecord, name: str) -> Any:
    """A structured field of a log line (logging's `extra`)."""
    return record.__dict__[name]


class FakeQueue:
    """Fails the first `failures` sends (QueueUnavailable unless told otherwise), then works."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or QueueUnavailable("queue audit: down", queue_name="audit")
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0

    async def send(self, message: Mapping[str, Any]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        self.sent.append(dict(message))

    @property
    def ids(self) -> list[str]:
        return [message["entryId"] for message in self.sent]


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
    """Let the background drain do what it can now."""
    for _ in range(50):
        await asyncio.sleep(0)


def given_up_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and hasattr(r, "auditEntry")]


def test_it_is_an_audit_trail() -> None:
    audit: AuditTrail = trail(FakeQueue())
    assert audit is not None


async def test_entries_go_straight_to_the_queue_while_it_works() -> None:
    queue = FakeQueue()
    audit = trail(queue)
    await audit.record(entry(1))
    await audit.record(entry(2))
    assert queue.ids == ["e1", "e2"]
    assert queue.sent[0] == entry(1).to_message()
    assert audit.backlog == 0
    assert audit.counts.sent == 2


async def test_failed_entries_wait_and_are_sent_in_order_once_the_queue_is_back() -> None:
    queue, clock = FakeQueue(failures=1), Clock()
    audit = trail(queue, clock)
    await audit.record(entry(1))  # fails: kept
    assert audit.backlog == 1
    assert queue.sent == []
    await audit.record(entry(2))  # kept without trying: the queue just failed
    await settle()
    assert audit.backlog == 2
    assert queue.attempts == 1
    clock.now += 5  # the retry interval: the background drain sends the backlog
    await settle()
    assert queue.ids == ["e1", "e2"]
    assert audit.backlog == 0
    await audit.record(entry(3))  # straight to the queue again
    assert queue.ids[-1] == "e3"
    assert audit.counts.sent == 3
    assert audit.counts.failed_sends == 1


async def test_the_backlog_drains_on_its_own_even_if_nothing_else_is_recorded() -> None:
    queue, clock = FakeQueue(failures=3), Clock()
    audit = trail(queue, clock)
    await audit.record(entry(1))
    await settle()
    for _ in range(3):
        clock.now += 5
        await settle()
    assert queue.ids == ["e1"]
    assert audit.backlog == 0
    assert clock.sleeps == [5, 5, 5]


async def test_record_never_raises_and_does_not_touch_a_down_queue_again() -> None:
    queue, clock = FakeQueue(failures=1000), Clock()
    audit = trail(queue, clock)
    for n in range(20):
        await audit.record(entry(n))
        await settle()
    assert audit.backlog == 20
    assert queue.sent == []
    assert queue.attempts == 1, "one try per retry interval, not one per entry"
    clock.now += 5
    await settle()
    assert queue.attempts == 2


async def test_a_queue_that_hangs_costs_at_most_the_send_timeout() -> None:
    class Hanging:
        async def send(self, message: Mapping[str, Any]) -> None:
            await asyncio.sleep(3600)

    audit = trail(Hanging(), send_timeout_seconds=0.05)
    async with asyncio.timeout(2):
        await audit.record(entry(1))
        await audit.record(entry(2))  # backlog: returns at once
    assert audit.backlog == 2


async def test_flush_sends_the_backlog_now_and_says_what_is_left() -> None:
    queue, clock = FakeQueue(failures=3), Clock()
    audit = trail(queue, clock)
    for n in range(3):
        await audit.record(entry(n))
    assert audit.backlog == 3  # first failed; the others waited for the retry interval
    assert await audit.flush() == 3  # second failure: still all there
    assert await audit.flush() == 3  # third
    assert await audit.flush() == 0
    assert queue.ids == ["e0", "e1", "e2"]


async def test_flush_with_a_drain_running_sends_every_entry_once() -> None:
    class Slow(FakeQueue):
        async def send(self, message: Mapping[str, Any]) -> None:
            await asyncio.sleep(0.01)
            await super().send(message)

    queue, clock = Slow(failures=1), Clock()
    audit = trail(queue, clock)
    await audit.record(entry(0))
    for n in range(1, 5):
        await audit.record(entry(n))
    clock.now += 5
    await asyncio.sleep(0.015)  # the background drain is sending now
    assert await audit.flush() == 0
    assert queue.ids == ["e0", "e1", "e2", "e3", "e4"]


async def test_the_backlog_is_bounded_and_overflow_is_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = FakeQueue(failures=1000)
    audit = trail(queue, max_backlog=3)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        for n in range(5):
            await audit.record(entry(n, assetId=f"A-{n}", details={"role": "sensor"}))
    assert audit.backlog == 3
    assert audit.counts.given_up == 2
    lines = given_up_lines(caplog)
    assert [field(line, "entryId") for line in lines] == ["e3", "e4"]
    assert all("backlog is full" in line.getMessage() for line in lines)
    assert field(lines[0], "assetId") == "A-3"
    assert (
        json.loads(field(lines[0], "auditEntry"))
        == entry(3, assetId="A-3", details={"role": "sensor"}).to_message()
    )
    queue.failures = 0
    assert await audit.flush() == 0
    assert queue.ids == ["e0", "e1", "e2"]


async def test_an_entry_the_queue_refuses_is_logged_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = QueueRejected(
        "queue audit: 403", queue_name="audit", status=403, code="AuthorizationFailure"
    )
    queue = FakeQueue(failures=1, error=refused)
    audit = trail(queue)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await audit.record(entry(1))
        await audit.record(entry(2))
    assert audit.backlog == 0
    assert queue.ids == ["e2"]
    assert [field(line, "entryId") for line in given_up_lines(caplog)] == ["e1"]
    assert audit.counts.given_up == 1


async def test_an_entry_too_large_for_the_queue_is_queued_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    too_large = QueueRejected(
        "queue audit: too large", queue_name="audit", status=None, code="MessageTooLarge"
    )
    queue = FakeQueue(failures=1, error=too_large)
    audit = trail(queue)
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await audit.record(entry(1, details={"blob": "x" * 10}))
    assert queue.ids == ["e1"]
    assert "blob" not in queue.sent[0]["details"]
    assert "detailsDropped" in queue.sent[0]["details"]
    [line] = given_up_lines(caplog)
    assert json.loads(field(line, "auditEntry"))["details"] == {"blob": "x" * 10}
    assert audit.counts.details_dropped == 1


async def test_a_broken_sender_does_not_reach_the_caller() -> None:
    queue = FakeQueue(failures=1, error=RuntimeError("bug"))
    audit = trail(queue)
    await audit.record(entry(1))
    assert audit.backlog == 1
    assert await audit.flush() == 0


async def test_closing_logs_every_entry_still_waiting(caplog: pytest.LogCaptureFixture) -> None:
    queue = FakeQueue(failures=1000)
    audit = trail(queue)
    for n in range(3):
        await audit.record(entry(n))
    with caplog.at_level(logging.ERROR, logger="audit.test"):
        await audit.aclose()
    await settle()
    assert audit.backlog == 0
    assert queue.attempts == 2, "closing tried once more, then stopped retrying"
    assert [field(line, "entryId") for line in given_up_lines(caplog)] == ["e0", "e1", "e2"]
    assert audit.counts.given_up == 3


async def test_a_cancelled_record_keeps_its_entry() -> None:
    class Hanging(FakeQueue):
        async def send(self, message: Mapping[str, Any]) -> None:
            await asyncio.sleep(3600)

    audit = trail(Hanging())
    task = asyncio.create_task(audit.record(entry(1)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert audit.backlog == 1
