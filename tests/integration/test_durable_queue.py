"""StorageQueue (the app's durable queue writer) against a real Azurite.

Messages are read back with azure-storage-queue as the Functions host would: the raw message
text, base64-decoded when the encoding is base64, must be the compact JSON that was sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from devstack.azurite import ACCOUNT_NAME, AzuriteChild, start_azurite
from devstack.processes import stop_children
from resilience.durable_queue import StorageQueue
from resilience.queue_port import (
    MAX_MESSAGE_BYTES,
    DurableQueue,
    QueueBacklog,
    QueueRejected,
    QueueUnavailable,
)
from tests.integration.azurite_fixtures import azurite, unique_name
from tests.integration.idle_front_end import IdleFrontEnd

__all__ = ["azurite"]


@pytest.fixture
async def reader(azurite: AzuriteChild) -> AsyncIterator[Reader]:
    queues = Reader(azurite.connection_string)
    yield queues
    await queues.aclose()


class Reader:
    """Reads queues with the SDK, no decode policy: the text exactly as stored."""

    def __init__(self, connection_string: str) -> None:
        self._connection_string = connection_string
        self._clients: dict[str, QueueClient] = {}

    def client(self, name: str) -> QueueClient:
        if name not in self._clients:
            self._clients[name] = QueueClient.from_connection_string(self._connection_string, name)
        return self._clients[name]

    async def peek_texts(self, name: str) -> list[str]:
        return [str(m.content) for m in await self.client(name).peek_messages(max_messages=32)]

    async def receive_all(self, name: str) -> list[str]:
        """Every message once: each received one stays invisible until the test is over."""
        texts = []
        pages = self.client(name).receive_messages(messages_per_page=32, visibility_timeout=300)
        async for message in pages:
            texts.append(str(message.content))
        return texts

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()


def decoded(text: str, encoding: str) -> Any:
    if encoding == "base64":
        return json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    return json.loads(text)


@pytest.mark.parametrize("encoding", ["base64", "none"])
async def test_sent_message_reads_back_as_compact_json(
    azurite: AzuriteChild, reader: Reader, encoding: Any
) -> None:
    name = unique_name("enc")
    message = {"kind": "twinChange", "deviceId": "dev-é-1", "attempts": 2, "event": {"a": [1]}}
    async with StorageQueue(azurite.connection_string, name, encoding=encoding) as queue:
        port: DurableQueue = queue
        await port.send(message)

    [text] = await reader.peek_texts(name)
    assert decoded(text, encoding) == message
    compact = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    if encoding == "base64":
        assert text == base64.b64encode(compact.encode()).decode()
    else:
        assert text == compact


async def test_base64_is_the_default_as_in_the_functions_host(
    azurite: AzuriteChild, reader: Reader
) -> None:
    name = unique_name("default")
    async with StorageQueue(azurite.connection_string, name) as queue:
        await queue.send({"n": 1})
    [text] = await reader.peek_texts(name)
    assert text == base64.b64encode(b'{"n":1}').decode()


async def test_creates_a_missing_queue_once_and_again_if_it_is_deleted(
    azurite: AzuriteChild, reader: Reader
) -> None:
    name = unique_name("created")
    client = reader.client(name)
    async with StorageQueue(azurite.connection_string, name) as queue:
        await queue.send({"n": 1})
        assert (await client.get_queue_properties()).approximate_message_count == 1

        await client.delete_queue()
        await queue.send({"n": 2})

    assert [decoded(text, "base64") for text in await reader.peek_texts(name)] == [{"n": 2}]


async def test_an_existing_queue_is_used_as_it_is(azurite: AzuriteChild, reader: Reader) -> None:
    name = unique_name("existing")
    await reader.client(name).create_queue()
    await reader.client(name).send_message("already there")
    async with StorageQueue(azurite.connection_string, name, encoding="none") as queue:
        await queue.send({"n": 1})
    assert await reader.peek_texts(name) == ["already there", '{"n":1}']


@pytest.mark.parametrize(
    ("encoding", "json_bytes_that_fit"),
    [("none", MAX_MESSAGE_BYTES), ("base64", MAX_MESSAGE_BYTES // 4 * 3)],
)
async def test_the_64_kib_limit_counts_the_message_as_sent(
    azurite: AzuriteChild, reader: Reader, encoding: Any, json_bytes_that_fit: int
) -> None:
    """The largest message that fits lands; one byte more is rejected, naming the limit."""
    name = unique_name("limit")
    envelope = len(b'{"data":""}')

    def message(json_bytes: int) -> dict[str, str]:
        return {"data": "x" * (json_bytes - envelope)}

    async with StorageQueue(azurite.connection_string, name, encoding=encoding) as queue:
        await queue.send(message(json_bytes_that_fit))
        with pytest.raises(QueueRejected, match=r"limited to 64 KiB \(65536 bytes\)") as info:
            await queue.send(message(json_bytes_that_fit + 1))

    assert info.value.status is None
    assert info.value.code == "MessageTooLarge"
    assert info.value.queue_name == name
    assert "xxxx" not in str(info.value)
    [text] = await reader.peek_texts(name)
    assert len(text) == MAX_MESSAGE_BYTES


async def test_a_much_larger_message_is_rejected(azurite: AzuriteChild) -> None:
    async with StorageQueue(azurite.connection_string, unique_name("huge")) as queue:
        with pytest.raises(QueueRejected, match="64 KiB"):
            await queue.send({"blob": "y" * 200_000})


async def test_a_message_that_is_not_json_is_rejected(azurite: AzuriteChild) -> None:
    async with StorageQueue(azurite.connection_string, unique_name("notjson")) as queue:
        with pytest.raises(QueueRejected, match="not JSON-serialisable") as info:
            await queue.send({"at": object()})
        with pytest.raises(QueueRejected):
            await queue.send({"x": float("nan")})
    assert info.value.code == "NotJson"


async def test_a_wrong_account_key_is_rejected_with_the_service_status(
    azurite: AzuriteChild,
) -> None:
    wrong = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={base64.b64encode(b'k' * 64).decode()};QueueEndpoint={azurite.queue_url}"
    )
    async with StorageQueue(wrong, unique_name("auth")) as queue:
        with pytest.raises(QueueRejected) as info:
            await queue.send({"n": 1})
    assert info.value.status == 403
    assert info.value.code is not None


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        StorageQueue("UseDevelopmentStorage=true", "Bad_Name")
    with pytest.raises(ValueError, match="encoding"):
        StorageQueue("UseDevelopmentStorage=true", "good-name", encoding="utf8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        StorageQueue("UseDevelopmentStorage=true", "good-name", timeout_seconds=0)


async def test_200_concurrent_sends_each_land_exactly_once(
    azurite: AzuriteChild, reader: Reader
) -> None:
    name = unique_name("burst")
    async with StorageQueue(azurite.connection_string, name) as queue:
        await asyncio.gather(*(queue.send({"i": i}) for i in range(200)))

    assert (await reader.client(name).get_queue_properties()).approximate_message_count == 200
    received = [decoded(text, "base64")["i"] for text in await reader.receive_all(name)]
    assert sorted(received) == list(range(200))


async def test_logs_queue_name_and_message_id_never_the_body(
    azurite: AzuriteChild, reader: Reader, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("logs")
    secret = "device-secret-4711"
    caplog.set_level(logging.DEBUG)
    async with StorageQueue(azurite.connection_string, name, encoding="none") as queue:
        await queue.send({"serial": secret})
        with pytest.raises(QueueRejected):
            await queue.send({"serial": secret, "pad": "z" * MAX_MESSAGE_BYTES})

    [message] = await reader.client(name).peek_messages()
    queued = [r for r in caplog.records if r.getMessage() == "message queued"]
    assert [(r.__dict__["queue"], r.__dict__["messageId"]) for r in queued] == [(name, message.id)]
    failed = [r for r in caplog.records if r.getMessage() == "queue send failed"]
    assert [(r.__dict__["queue"], r.__dict__["reason"]) for r in failed] == [
        (name, "QueueRejected")
    ]
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in json.dumps(record.__dict__, default=str)


async def test_aclose_releases_the_client_and_a_later_send_opens_a_new_one(
    azurite: AzuriteChild, reader: Reader
) -> None:
    name = unique_name("reopen")
    queue = StorageQueue(azurite.connection_string, name)
    await queue.send({"n": 1})
    await queue.aclose()
    await queue.aclose()
    await queue.send({"n": 2})
    await queue.aclose()
    assert len(await reader.peek_texts(name)) == 2


async def test_stopped_azurite_gives_queue_unavailable_within_the_timeout(
    tmp_path: Path,
) -> None:
    own = start_azurite(tmp_path / "run", tmp_path / "data", queue_port=0, table_port=0)
    queue = StorageQueue(own.connection_string, unique_name("down"), timeout_seconds=2)
    try:
        await queue.send({"n": 1})
    finally:
        stop_children(own.children)
    try:
        started = time.monotonic()
        with pytest.raises(QueueUnavailable, match="down") as info:
            await queue.send({"n": 2})
        assert time.monotonic() - started < 2.5
        assert info.value.queue_name.startswith("down")
    finally:
        await queue.aclose()


async def test_a_service_that_never_answers_gives_queue_unavailable_after_the_timeout() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        f"KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
    )
    try:
        async with StorageQueue(connection_string, "silent", timeout_seconds=0.5) as queue:
            started = time.monotonic()
            with pytest.raises(QueueUnavailable, match=r"silent: no answer within 0.5 s"):
                await queue.send({"n": 1})
            elapsed = time.monotonic() - started
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert 0.4 < elapsed < 1.5


def _through(front_end: IdleFrontEnd, azurite: AzuriteChild) -> str:
    """Azurite's connection string with the queue endpoint behind the front end."""
    return azurite.connection_string.replace(azurite.queue_url, f"{front_end.url}/{ACCOUNT_NAME}")


@pytest.mark.parametrize("close_with_fin", [False, True], ids=["reset", "fin"])
async def test_a_connection_closed_while_idle_is_sent_again_and_the_send_lands_once(
    azurite: AzuriteChild, reader: Reader, close_with_fin: bool
) -> None:
    name = unique_name("idle")
    async with (
        IdleFrontEnd(
            "127.0.0.1", azurite.queue_port, idle_timeout=0.2, close_with_fin=close_with_fin
        ) as front_end,
        StorageQueue(_through(front_end, azurite), name) as queue,
    ):
        for n in range(3):
            await queue.send({"n": n})
            await asyncio.sleep(0.3)
        assert front_end.resets >= 2, "the front end closed the idle connections"

    received = [decoded(text, "base64")["n"] for text in await reader.receive_all(name)]
    assert sorted(received) == [0, 1, 2]


async def test_a_reset_on_a_fresh_connection_is_queue_unavailable(azurite: AzuriteChild) -> None:
    async with IdleFrontEnd("127.0.0.1", azurite.queue_port) as front_end:
        async with StorageQueue(_through(front_end, azurite), unique_name("reset")) as queue:
            await queue.send({"n": 1})
            front_end.reset_every_connection = True
            with pytest.raises(QueueUnavailable, match="ServiceRequestError"):
                await queue.send({"n": 2})
        assert front_end.resets == 2, "the reused connection, then one fresh connection"


async def test_the_backlog_counts_every_message_and_dates_the_one_at_the_front(
    azurite: AzuriteChild, reader: Reader
) -> None:
    name = unique_name("backlog")
    async with StorageQueue(azurite.connection_string, name) as queue:
        # A queue nobody has created yet holds nothing; reading it creates nothing.
        assert await queue.backlog() == QueueBacklog(name, 0, None)
        sent_at = datetime.now(UTC)
        await queue.send({"n": 1})
        await queue.send({"n": 2})
        backlog = await queue.backlog()
        assert (backlog.queue_name, backlog.messages) == (name, 2)
        assert backlog.oldest_enqueued_at is not None
        assert abs((backlog.oldest_enqueued_at - sent_at).total_seconds()) < 5

        # A message being processed (invisible) is counted but has no visible front to date.
        [taken] = [m async for m in reader.client(name).receive_messages(max_messages=1)]
        [other] = [m async for m in reader.client(name).receive_messages(max_messages=1)]
        assert taken.id != other.id
        assert await queue.backlog() == QueueBacklog(name, 2, None)
    assert [decoded(t, "base64") for t in await reader.peek_texts(name)] == []
