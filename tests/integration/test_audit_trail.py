"""The audit trail against a real Azurite: the table store, and the queue -> writer -> table path
through a table outage (our own Azurite, whose table service we stop and start again)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue.aio import QueueClient

from audit import AuditEntry, AuditRequeueFailed, AuditStoreUnavailable
from audit.queue import AuditQueue
from audit.table_keys import partition_key
from audit.trail import QueuedAuditTrail
from audit.writer import AuditWriter
from devstack.azurite import HOST, REPO_ROOT, AzuriteChild, start_azurite
from devstack.processes import Child, start_command, stop_children, wait_listening
from tests.integration.audit_tables import AuditTableSides
from tests.integration.azurite_fixtures import azurite, unique_name

__all__ = ["azurite"]

T0 = datetime(2026, 11, 26, 5, 13, 32, 123456, tzinfo=UTC)


def entry(n: int, **fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "entryId": f"e{n:03d}-{unique_name('')}",
        "at": T0 + timedelta(seconds=n),
        "action": "allocation.decided",
        "actor": "dps-webhook",
        "outcome": "assigned",
        "registrationId": "dev-1",
        "deviceId": "dev-1",
        "assetId": "A-1",
        "hub": "hub-a.azure-devices.net",
        "requestId": f"req-{n}",
        "details": {"role": "sensor", "roleReason": "assetType thermometer", "n": n},
    }
    values.update(fields)
    return AuditEntry.model_validate(values)


def raw_entities(connection_string: str, table: str) -> list[dict[str, Any]]:
    """Every entity of the table, read with the SDK (no store in between)."""
    with TableClient.from_connection_string(connection_string, table) as client:
        try:
            return [dict(e) for e in client.list_entities()]
        except ResourceNotFoundError:
            return []


@pytest.fixture
async def store(azurite: AzuriteChild) -> AsyncIterator[AuditTableSides]:
    async with AuditTableSides(azurite.connection_string, unique_name("audit")) as opened:
        yield opened


# --- the table store -----------------------------------------------------------------------------


async def test_entries_read_back_oldest_first_by_device_and_by_asset(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    second, first, third = entry(2), entry(1), entry(3, deviceId="dev-2", registrationId="dev-2")
    for item in (second, first, third):
        assert await store.writer.append(item) == 2

    by_device = await store.timelines.by_device("dev-1")
    assert by_device.entries == [first, second]
    assert by_device.maybe_more is False
    by_asset = await store.timelines.by_asset("A-1")
    assert by_asset.entries == [first, second, third]
    assert (await store.timelines.by_device("dev-2")).entries == [third]

    rows = raw_entities(azurite.connection_string, store.table_name)
    partitions = sorted(row["PartitionKey"] for row in rows)
    assert partitions == ["asset|A-1"] * 3 + ["device|dev-1"] * 2 + ["device|dev-2"]
    stored = next(row for row in rows if row["entryId"] == first.entry_id)
    assert stored["action"] == "allocation.decided"
    assert json.loads(stored["details"]) == first.details
    assert stored["RowKey"].endswith("|" + first.entry_id)


async def test_appending_again_writes_nothing_twice(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    item = entry(1, registrationId="reg-1")
    assert await store.writer.append(item) == 3  # device, asset and registration partitions
    assert await store.writer.append(item) == 0
    assert await store.writer.append(AuditEntry.model_validate(item.to_message())) == 0
    assert len(raw_entities(azurite.connection_string, store.table_name)) == 3
    assert (await store.timelines.by_device("dev-1")).entries == [item]


async def test_a_registration_timeline_finds_entries_in_its_own_and_its_device_partition(
    store: AuditTableSides,
) -> None:
    refused = entry(1, action="allocation.refused", deviceId=None, assetId=None, hub=None,
                    registrationId="reg-7", outcome="refused")  # fmt: skip
    decided = entry(2, registrationId="reg-7", deviceId="dev-7")
    same_id = entry(3, registrationId="dev-7", deviceId="dev-7", action="sync.twinWritten",
                    actor="asset-sync")  # fmt: skip
    for item in (decided, same_id, refused):
        await store.writer.append(item)
    assert (await store.timelines.by_registration("reg-7")).entries == [refused, decided]
    assert (await store.timelines.by_registration("dev-7")).entries == [same_id]
    assert (await store.timelines.by_device("dev-7")).entries == [decided, same_id]


async def test_decisions_leave_out_syncs(store: AuditTableSides) -> None:
    decided = entry(1)
    synced = entry(2, action="sync.twinWritten", actor="asset-sync", outcome="written")
    fallback = entry(3, action="allocation.fallback", outcome="fallback")
    for item in (decided, synced, fallback):
        await store.writer.append(item)
    assert (await store.timelines.decisions_for("dev-1")).entries == [decided, fallback]
    assert (await store.timelines.by_registration("dev-1")).entries == [decided, synced, fallback]


async def test_a_limit_returns_the_latest_entries_and_says_more_exist(
    store: AuditTableSides,
) -> None:
    items = [entry(n) for n in range(7)]
    for item in reversed(items):
        await store.writer.append(item)
    latest = await store.timelines.by_device("dev-1", limit=3)
    assert latest.entries == items[4:]
    assert latest.maybe_more is True
    everything = await store.timelines.by_device("dev-1", limit=7)
    assert everything.entries == items
    assert everything.maybe_more is False


async def test_ids_with_characters_tables_forbid_in_keys(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    device, asset = "line/7#3?x\\y%z\t'quoted'", "Zähler/Ost ☃"
    item = entry(1, deviceId=device, registrationId=device, assetId=asset)
    assert await store.writer.append(item) == 2
    assert (await store.timelines.by_device(device)).entries == [item]
    assert (await store.timelines.by_asset(asset)).entries == [item]
    assert (await store.timelines.by_device("line")).entries == []
    keys = {
        row["PartitionKey"] for row in raw_entities(azurite.connection_string, store.table_name)
    }
    assert keys == {partition_key("device", device), partition_key("asset", asset)}


async def test_details_beyond_one_property_round_trip(store: AuditTableSides) -> None:
    item = entry(1, details={"evidence": "ä" * 40_000, "role": "gateway"})
    await store.writer.append(item)
    assert (await store.timelines.by_device("dev-1")).entries == [item]


async def test_an_entry_about_no_device_asset_or_registration_is_still_stored(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    item = entry(1, deviceId=None, assetId=None, registrationId=None)
    assert await store.writer.append(item) == 1
    [row] = raw_entities(azurite.connection_string, store.table_name)
    assert row["PartitionKey"] == "unattributed|2026-11-26"


async def test_reading_a_table_that_does_not_exist_finds_nothing(azurite: AzuriteChild) -> None:
    async with AuditTableSides(azurite.connection_string, unique_name("none")) as empty:
        timeline = await empty.timelines.by_device("dev-1")
    assert timeline.entries == []
    assert timeline.maybe_more is False


async def test_a_table_deleted_behind_our_back_is_created_again(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    await store.writer.append(entry(1))
    with TableClient.from_connection_string(azurite.connection_string, store.table_name) as t:
        t.delete_table()
    second = entry(2)
    assert await store.writer.append(second) == 2
    assert (await store.timelines.by_device("dev-1")).entries == [second]


async def test_entities_that_are_not_entries_are_counted_not_fatal(
    store: AuditTableSides, azurite: AzuriteChild
) -> None:
    good = entry(2)
    await store.writer.append(good)
    with TableClient.from_connection_string(azurite.connection_string, store.table_name) as t:
        t.create_entity({"PartitionKey": "device|dev-1", "RowKey": "0", "note": "by hand"})
    timeline = await store.timelines.by_device("dev-1")
    assert timeline.entries == [good]
    assert timeline.unreadable == 1


# --- queue -> writer -> table, through a table outage -------------------------------------------


@dataclass
class OwnAzurite:
    """An Azurite of this test alone: its table service may be stopped and started again."""

    running: AzuriteChild
    extra: list[Child] = field(default_factory=list)

    @property
    def connection_string(self) -> str:
        return self.running.connection_string

    def stop_table(self) -> None:
        """Ctrl-C, as an operator stops it: Azurite saves its tables only on SIGINT (SIGTERM
        loses what it wrote in the last 5 s, its autosave interval)."""
        for child in [self.running.table, *self.extra]:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGINT)
                try:
                    child.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    stop_children([child])
        wait_closed(self.running.table_port)

    def stop_queue(self) -> None:
        stop_children([self.running.queue])

    def start_table(self) -> None:
        """azurite-table again, on the same port and data directory (entries survive)."""
        assert self.running.table.log_path is not None
        child = start_command(
            f"azurite-table-{len(self.extra) + 2}",
            [
                str(REPO_ROOT / "node_modules" / ".bin" / "azurite-table"),
                *("--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry"),
                *("--location", str(self.running.data_dir.resolve())),
                *("--tableHost", HOST, "--tablePort", str(self.running.table_port)),
            ],
            run_dir=self.running.table.log_path.parent,
            cwd=REPO_ROOT,
        )
        self.extra.append(child)
        wait_listening([(child, self.running.table_port)])


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[OwnAzurite]:
    own = OwnAzurite(start_azurite(tmp_path / "run", tmp_path / "data", queue_port=0, table_port=0))
    yield own
    stop_children([*own.running.children, *own.extra])


def wait_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepts connections")


class FunctionsHost:
    """Delivers queue messages to the writer as the Functions host does (messageEncoding
    base64): success deletes the message; a failure leaves it to reappear, and a message that
    failed max_dequeue_count times moves to `<queue>-poison`."""

    def __init__(self, connection_string: str, queue: str, writer: AuditWriter) -> None:
        self.queue = QueueClient.from_connection_string(connection_string, queue)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue}-poison")
        self.writer = writer
        self.max_dequeue_count = 5
        self.outcomes: list[str] = []
        self.failures: list[BaseException] = []

    async def deliver_visible(self) -> int:
        """One receive of up to 32 visible messages, each handled; how many there were."""
        messages = [
            message
            async for message in self.queue.receive_messages(
                messages_per_page=32, max_messages=32, visibility_timeout=30
            )
        ]
        for message in messages:
            body = base64.b64decode(str(message.content))
            try:
                outcome = await self.writer.handle(
                    body, dequeue_count=message.dequeue_count or 1, request_id="host-test"
                )
            except Exception as exc:
                self.failures.append(exc)
                if (message.dequeue_count or 1) >= self.max_dequeue_count:
                    with contextlib.suppress(Exception):
                        await self.poison.create_queue()
                    await self.poison.send_message(message.content)
                    await self.queue.delete_message(message)
                else:
                    await self.queue.update_message(message, visibility_timeout=0)
                continue
            self.outcomes.append(outcome)
            await self.queue.delete_message(message)
        return len(messages)

    async def waiting(self) -> int:
        """Messages in the queue, visible or not (Azurite's count is exact)."""
        properties = await self.queue.get_queue_properties()
        return int(properties.approximate_message_count or 0)

    async def peek_bodies(self) -> list[dict[str, Any]]:
        peeked = await self.queue.peek_messages(max_messages=32)
        return [json.loads(base64.b64decode(str(m.content))) for m in peeked]

    async def poisoned(self) -> int:
        try:
            properties = await self.poison.get_queue_properties()
        except ResourceNotFoundError:
            return 0
        return int(properties.approximate_message_count or 0)

    async def aclose(self) -> None:
        await self.queue.close()
        await self.poison.close()


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    """Poll: the state is another process's (a queue's visibility, a table's contents)."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110  # nothing to wait on but the service
            await asyncio.sleep(0.2)


async def test_a_table_outage_puts_entries_back_with_a_delay_and_loses_none(
    own_azurite: OwnAzurite, caplog: pytest.LogCaptureFixture
) -> None:
    connection = own_azurite.connection_string
    queue = AuditQueue(connection, "audit", timeout_seconds=3)
    store = AuditTableSides(connection, "audit", timeout_seconds=2)
    writer = AuditWriter(
        store.writer, queue, base_delay_seconds=1, max_delay_seconds=2, random_fraction=lambda: 1.0
    )
    host = FunctionsHost(connection, "audit", writer)
    trail = QueuedAuditTrail(queue)
    try:
        before = entry(0)
        await trail.record(before)
        assert await trail.flush() == 0  # record() only keeps it; the flusher sends batches
        [queued] = await host.queue.peek_messages()
        assert queued.expires_on is not None
        assert queued.expires_on.year == 9999, "audit messages never expire"
        await host.deliver_visible()
        assert host.outcomes == ["written"]

        own_azurite.stop_table()
        during = [entry(n, deviceId=f"out-{n}", registrationId=f"out-{n}") for n in range(1, 7)]
        for item in during:
            await trail.record(item)
        assert await trail.flush() == 0, "the queue is up: the flows never notice the outage"
        assert await host.waiting() == 1, "six entries, one batch message"

        with caplog.at_level(logging.WARNING, logger="audit"):
            assert await host.deliver_visible() == 1
        assert host.outcomes[1:] == ["requeued"]
        assert host.failures == []
        assert await host.waiting() == 1, "the batch is back on the queue, once"
        assert await host.peek_bodies() == [], "and invisible for a while"
        assert sum("put back on the queue" in r.getMessage() for r in caplog.records) == 1

        await wait_for(lambda: _visible(host, 1))
        [body] = await host.peek_bodies()
        assert body["writeAttempts"] == 1
        assert [e["entryId"] for e in body["entries"]] == [item.entry_id for item in during]
        # A second round while still down: attempt 2, still not a failure.
        assert await host.deliver_visible() == 1
        assert host.failures == []
        await wait_for(lambda: _visible(host, 1))
        [body] = await host.peek_bodies()
        assert body["writeAttempts"] == 2
        assert len(body["entries"]) == 6

        own_azurite.start_table()
        await wait_for(lambda: _drained(host), seconds=30)
        assert host.outcomes.count("written") == 2
        assert host.failures == []
        assert await host.poisoned() == 0

        for item in [before, *during]:
            assert (await store.timelines.by_device(item.device_id or "")).entries == [item]
        assert len((await store.timelines.by_asset("A-1")).entries) == 7
        assert len(raw_entities(connection, "audit")) == 14, "exactly once per partition"
    finally:
        await trail.aclose()
        await host.aclose()
        await store.aclose()
        await queue.aclose()


async def _visible(host: FunctionsHost, count: int) -> bool:
    return len(await host.peek_bodies()) == count


async def _drained(host: FunctionsHost) -> bool:
    await host.deliver_visible()
    return await host.waiting() == 0


async def test_a_redelivered_message_writes_nothing_twice(own_azurite: OwnAzurite) -> None:
    connection = own_azurite.connection_string
    async with (
        AuditQueue(connection, "audit") as queue,
        AuditTableSides(connection, "audit") as store,
    ):
        writer = AuditWriter(store.writer, queue)
        body = json.dumps(entry(1).to_message()).encode()
        assert await writer.handle(body) == "written"
        assert await writer.handle(body, dequeue_count=2) == "duplicate"
        put_back = json.dumps({**entry(1).to_message(), "writeAttempts": 3}).encode()
        assert await writer.handle(put_back) == "written"  # another entry id: a new entry
        assert len(raw_entities(connection, "audit")) == 4
        batch = {"entries": [entry(2).to_message(), entry(3).to_message()], "writeAttempts": 1}
        assert await writer.handle(json.dumps(batch).encode()) == "written"
        assert await writer.handle(json.dumps(batch).encode(), dequeue_count=2) == "duplicate"
        assert len(raw_entities(connection, "audit")) == 8


async def test_an_unreadable_message_is_logged_and_acknowledged(
    own_azurite: OwnAzurite, caplog: pytest.LogCaptureFixture
) -> None:
    connection = own_azurite.connection_string
    async with (
        AuditQueue(connection, "audit") as queue,
        AuditTableSides(connection, "audit") as store,
    ):
        host = FunctionsHost(connection, "audit", AuditWriter(store.writer, queue))
        try:
            await host.queue.create_queue()
            await host.queue.send_message(base64.b64encode(b"definitely not an entry").decode())
            await host.queue.send_message(base64.b64encode(b'{"action": "x"}').decode())
            with caplog.at_level(logging.ERROR, logger="audit"):
                assert await host.deliver_visible() == 2
            assert host.outcomes == ["unreadable", "unreadable"]
            assert await host.waiting() == 0
            assert await host.poisoned() == 0
            raws = [r.__dict__.get("raw") for r in caplog.records if r.levelno == logging.ERROR]
            assert raws == ["definitely not an entry", '{"action": "x"}']
        finally:
            await host.aclose()


async def test_the_writer_raises_only_when_table_and_queue_are_both_down(
    own_azurite: OwnAzurite,
) -> None:
    connection = own_azurite.connection_string
    async with (
        AuditQueue(connection, "audit", timeout_seconds=2) as queue,
        AuditTableSides(connection, "audit", timeout_seconds=2) as store,
    ):
        writer = AuditWriter(store.writer, queue)
        body = json.dumps(entry(1).to_message()).encode()
        own_azurite.stop_table()
        with pytest.raises(AuditStoreUnavailable, match="table audit"):
            await store.writer.append(entry(1))
        own_azurite.stop_queue()
        with pytest.raises(AuditRequeueFailed, match="would not take it back"):
            await writer.handle(body)
