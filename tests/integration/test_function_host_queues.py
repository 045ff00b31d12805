"""Queue triggers and queue output bindings of the dev host: a real child host, real Azurite.

The tests talk to the queues with azure-storage-queue and no encode/decode policy, so they see
the message text exactly as stored: base64 unless host.json says messageEncoding none.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME, HOST, AzuriteChild
from devstack.function_host.errors import StartupError
from devstack.function_host.host_config import QueuesOptions, load_host_config
from devstack.function_host.storage_queues import (
    BadMessageEncoding,
    QueueClients,
    QueueConfigError,
    decode_message,
    encode_message,
    resolve_connection,
    resolve_queue_name,
)
from devstack.processes import Child, start_child, stop_children, wait_ready
from tests.integration.azurite_fixtures import azurite, unique_name

__all__ = ["azurite"]

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
QUEUE_SETTINGS = ("ITEMS_QUEUE", "FLAKY_QUEUE", "TEXT_QUEUE", "FORWARD_QUEUE", "OUTPUT_QUEUE")
LISTENED = ("ITEMS_QUEUE", "FLAKY_QUEUE", "TEXT_QUEUE", "FORWARD_QUEUE")
MAIN_QUEUES = {
    "batchSize": 4,
    "newBatchThreshold": 2,
    "maxDequeueCount": 3,
    "visibilityTimeout": "00:00:01",
    "maxPollingInterval": "00:00:00.200",
}
WAIT_SECONDS = 15.0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _dead_connection_string() -> str:
    """Azurite's account at a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://{HOST}:{port}/{ACCOUNT_NAME}"
    )


def wait_until(check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy; that value, or the last falsy one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


async def _post_async(url: str, body: bytes) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=body) as response,
    ):
        return response.status, await response.text()


@dataclass
class QueueHost:
    """queue_app in a script root of its own, with queues of its own; start() runs it."""

    base: Path
    args: list[str]
    record_file: Path
    connection_string: str
    queues: dict[str, str]
    child: Child | None = None
    _clients: dict[str, QueueClient] = field(default_factory=dict)

    def start(self, name: str) -> Child:
        self.child = start_child(
            name, "devstack.function_host", self.args, run_dir=self.base, cwd=REPO_ROOT
        )
        return self.child

    @property
    def url(self) -> str:
        assert self.child is not None
        return self.child.url

    def log(self) -> str:
        assert self.child is not None
        assert self.child.log_path is not None
        return self.child.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1) -> str:
        wait_until(lambda: self.log().count(text) >= count)
        return self.log()

    def records(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        lines = self.record_file.read_text().splitlines()
        return [r for r in (json.loads(line) for line in lines if line) if match(r)]

    def wait_for_records(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1
    ) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.records(match)) >= count)
        return self.records(match)

    def queue(self, setting_or_name: str) -> QueueClient:
        """A raw-text client for the queue of an app setting (or a queue name)."""
        name = self.queues.get(setting_or_name, setting_or_name)
        if name not in self._clients:
            self._clients[name] = QueueClient.from_connection_string(self.connection_string, name)
        return self._clients[name]

    def send(self, setting: str, text: str) -> Any:
        return self.queue(setting).send_message(text)

    def peek(self, setting_or_name: str) -> list[str]:
        """The text of up to 32 visible messages; none while the queue does not exist."""
        try:
            return [str(m.content) for m in self.queue(setting_or_name).peek_messages(32)]
        except ResourceNotFoundError:
            return []

    def wait_for_empty(self, setting_or_name: str) -> bool:
        return bool(wait_until(lambda: not self.peek(setting_or_name)))

    def post(self, route: str, body: bytes) -> tuple[int, str]:
        return asyncio.run(_post_async(f"{self.url}/api/{route}", body))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _project(
    base: Path, azurite: AzuriteChild, queues_options: dict[str, Any] | None, **values: str
) -> QueueHost:
    """A script root with queue_app, host.json and local.settings.json naming fresh queues."""
    root = base / "project"
    root.mkdir()
    shutil.copy(APPS / "queue_app.py", root / "queue_app.py")
    host_json: dict[str, Any] = {"version": "2.0"}
    if queues_options is not None:
        host_json["extensions"] = {"queues": queues_options}
    (root / "host.json").write_text(json.dumps(host_json))
    record_file = base / "records.jsonl"
    queues = {setting: unique_name("q") for setting in QUEUE_SETTINGS}
    settings = {
        "QUEUE_RECORD_FILE": str(record_file),
        "AzureWebJobsStorage": azurite.connection_string,
        "FlakyStorage": azurite.connection_string,
        "DownStorage": _dead_connection_string(),
        **queues,
        **values,
    }
    settings_file = base / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": settings}))
    args = ["--port", "0", "--script-root", str(root), "--app", "queue_app:app"]
    args += ["--settings-file", str(settings_file)]
    return QueueHost(base, args, record_file, azurite.connection_string, queues)


def _running(host: QueueHost, name: str, listeners: int) -> Iterator[QueueHost]:
    child = host.start(name)
    try:
        wait_ready(child)
        host.wait_for_log("queue listener started", count=listeners)
        yield host
    finally:
        stop_children([child])
        host.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteChild) -> Iterator[QueueHost]:
    """base64 (default), batchSize 4 + newBatchThreshold 2, 3 dequeues, 1 s visibility."""
    project = _project(tmp_path_factory.mktemp("queue-host"), azurite, MAIN_QUEUES)
    yield from _running(project, "queue-host", listeners=len(LISTENED))


def _dequeue_times(client: QueueClient, times: int) -> None:
    """Receive the queue's only message `times` times, making it visible again each time."""
    for _ in range(times):
        (message,) = list(client.receive_messages(visibility_timeout=30))
        client.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)


@dataclass(frozen=True)
class PlainHost:
    host: QueueHost
    pre_dequeued: str


@pytest.fixture(scope="module")
def plain_host(
    tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteChild
) -> Iterator[PlainHost]:
    """messageEncoding none, other options default; the flaky connection's identity settings
    are wrong (no service, and a credential the host does not know).

    Before it starts, its items queue holds a message already dequeued 5 times
    (maxDequeueCount 5): the host's own receive makes that 6.
    """
    options = {"messageEncoding": "none", "maxPollingInterval": "00:00:00.200"}
    identity = {
        "FlakyStorage": "",
        "FlakyStorage__queueServiceUri": "https://a.queue.x.net",
        "FlakyStorage__credential": "clientsecret",
    }
    project = _project(tmp_path_factory.mktemp("queue-host-plain"), azurite, options, **identity)
    items = project.queue("ITEMS_QUEUE")
    items.create_queue()
    pre_dequeued = f"old-{uuid.uuid4()}"
    items.send_message(pre_dequeued)
    _dequeue_times(items, 5)
    for running in _running(project, "queue-host-plain", listeners=len(LISTENED) - 1):
        yield PlainHost(running, pre_dequeued)


# --- start-up ---------------------------------------------------------------------------------


def test_listeners_create_their_queues_and_poison_queues(host: QueueHost) -> None:
    service = QueueServiceClient.from_connection_string(host.connection_string)
    with service:
        existing = {q.name for q in service.list_queues()}
    for setting in LISTENED:
        assert host.queues[setting] in existing, setting
        assert f"{host.queues[setting]}-poison" in existing, setting
    log = host.log()
    started = [line for line in log.splitlines() if "queue listener started" in line]
    assert len(started) == len(LISTENED)
    assert any(f"queue={host.queues['FLAKY_QUEUE']}" in line for line in started)
    assert all("connection=" in line for line in started)
    assert host.connection_string not in log, "connection strings are secrets"


def test_retry_policy_on_a_queue_trigger_is_ignored_with_a_warning(host: QueueHost) -> None:
    warning = next(line for line in host.log().splitlines() if "retry policies" in line)
    assert " WARNING " in warning
    assert "function=flaky" in warning


# --- queue triggers ---------------------------------------------------------------------------


def test_base64_message_is_delivered_once_with_its_metadata_then_deleted(host: QueueHost) -> None:
    body = json.dumps({"order": str(uuid.uuid4()), "note": "héllo ✓"})
    sent = host.send("ITEMS_QUEUE", _b64(body))
    (recorded,) = host.wait_for_records(lambda r: r.get("body") == body)
    assert recorded["kind"] == "QueueMessage"
    assert recorded["id"] == sent.id
    assert recorded["dequeue_count"] == 1
    assert recorded["insertion_time"] == sent.inserted_on.isoformat()
    assert recorded["expiration_time"] == sent.expires_on.isoformat()
    assert recorded["insertion_time"].endswith("+00:00")
    assert recorded["pop_receipt"]
    assert recorded["pop_receipt"] != sent.pop_receipt, "the receipt of the host's receive"
    assert host.wait_for_empty("ITEMS_QUEUE"), "deleted after success"
    time.sleep(0.5)
    assert len(host.records(lambda r: r.get("body") == body)) == 1, "delivered once"
    log = host.log()
    assert "Executing 'Functions.record_item' (Reason='New queue message detected on '" in log
    assert f"Trigger Details: MessageId: {sent.id}, DequeueCount: 1, InsertedOn: " in log
    assert "Executed 'Functions.record_item' (Succeeded, Id=" in log
    assert "héllo" not in log, "message bodies are never logged"


def test_str_annotation_gets_the_decoded_text(host: QueueHost) -> None:
    text = f"héllo ✓ {uuid.uuid4()}"
    host.send("TEXT_QUEUE", _b64(text))
    (recorded,) = host.wait_for_records(lambda r: r.get("value") == text)
    assert recorded["type"] == "str"
    assert host.wait_for_empty("TEXT_QUEUE")


def test_invalid_base64_goes_to_poison_at_once_unchanged(host: QueueHost) -> None:
    raw = f"not base64 {uuid.uuid4()}!"
    sent = host.send("ITEMS_QUEUE", raw)
    poison = f"{host.queues['ITEMS_QUEUE']}-poison"
    assert wait_until(lambda: raw in host.peek(poison)), "the text as it was, not re-encoded"
    assert host.wait_for_empty("ITEMS_QUEUE")
    assert not host.records(lambda r: r.get("id") == sent.id), "the function never ran"
    log = host.wait_for_log("Message decoding has failed")
    warning = next(line for line in log.splitlines() if "Message decoding has failed" in line)
    assert " WARNING " in warning
    assert f"messageId={sent.id}" in warning
    assert raw not in log


def _flaky(host: QueueHost, failures: int) -> tuple[str, Any]:
    run = uuid.uuid4().hex[:8]
    text = _b64(json.dumps({"run": run, "failures": failures}))
    return run, host.send("FLAKY_QUEUE", text)


def test_always_failing_message_is_tried_max_dequeue_count_times_then_poisoned(
    host: QueueHost,
) -> None:
    run, sent = _flaky(host, failures=-1)
    poison = f"{host.queues['FLAKY_QUEUE']}-poison"
    original = _b64(json.dumps({"run": run, "failures": -1}))
    assert wait_until(lambda: original in host.peek(poison)), "same text in <queue>-poison"
    assert host.wait_for_empty("FLAKY_QUEUE"), "and gone from the queue"
    attempts = host.records(lambda r: r.get("run") == run)
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3], "maxDequeueCount 3, in total"
    assert {a["id"] for a in attempts} == {sent.id}
    # visibilityTimeout 00:00:01: a failed message is invisible for about a second.
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.8 for gap in gaps), gaps
    time.sleep(0.5)
    assert len(host.records(lambda r: r.get("run") == run)) == 3, "no 4th attempt"
    log = host.log()
    moved = next(
        line for line in log.splitlines() if "Message has reached" in line and sent.id in line
    )
    assert "MaxDequeueCount of 3. Moving message to queue " in moved
    assert "dequeueCount=3" in moved, "poisoned right after the 3rd failure, not on a 4th receive"
    assert log.count(f"MessageId: {sent.id}, DequeueCount: ") == 3
    assert "Executed 'Functions.flaky' (Failed, Id=" in log


def test_message_failing_twice_then_succeeding_is_not_poisoned(host: QueueHost) -> None:
    run, _ = _flaky(host, failures=2)
    attempts = host.wait_for_records(lambda r: r.get("run") == run, count=3)
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3]
    assert host.wait_for_empty("FLAKY_QUEUE"), "deleted after the successful attempt"
    poison = f"{host.queues['FLAKY_QUEUE']}-poison"
    assert all(run not in base64.b64decode(text).decode() for text in host.peek(poison))
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.8 for gap in gaps), gaps


def test_a_batch_is_processed_exactly_once_concurrently_within_the_batch_limits(
    host: QueueHost,
) -> None:
    run = uuid.uuid4().hex[:8]
    bodies = {f"{run}-{n}" for n in range(20)}
    for body in sorted(bodies):
        host.send("ITEMS_QUEUE", _b64(body))
    recorded = host.wait_for_records(lambda r: r.get("body", "").startswith(f"{run}-"), count=20)
    assert host.wait_for_empty("ITEMS_QUEUE")
    time.sleep(0.5)
    recorded = host.records(lambda r: r.get("body", "").startswith(f"{run}-"))
    assert sorted(r["body"] for r in recorded) == sorted(bodies), "each exactly once"
    assert all(r["dequeue_count"] == 1 for r in recorded)
    overlap = max(
        sum(1 for other in recorded if other["started"] <= r["started"] < other["finished"])
        for r in recorded
    )
    # batchSize 4 + newBatchThreshold 2: never more than 6 at once, but several.
    assert 3 <= overlap <= 6, overlap


def test_admin_invoke_of_a_queue_function_runs_it_without_the_queue(host: QueueHost) -> None:
    body = f"admin-{uuid.uuid4()}"
    status, _ = asyncio.run(_admin_invoke(host.url, "record_item", body))
    assert status == 202
    (recorded,) = host.wait_for_records(lambda r: r.get("body") == body)
    assert recorded["dequeue_count"] == 1
    assert uuid.UUID(recorded["id"])
    assert not host.peek("ITEMS_QUEUE")
    assert body not in " ".join(host.peek(f"{host.queues['ITEMS_QUEUE']}-poison"))


async def _admin_invoke(url: str, function: str, text: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(f"{url}/admin/functions/{function}", json={"input": text}) as response,
    ):
        return response.status, await response.text()


# --- output bindings --------------------------------------------------------------------------


def test_http_output_binding_sends_a_base64_message_before_the_response(host: QueueHost) -> None:
    body = f"order {uuid.uuid4()} ✓"
    status, text = host.post("enqueue", body.encode())
    assert (status, text) == (200, "queued")
    # No waiting: the host answers only once the message is in the queue.
    assert _b64(body) in host.peek("OUTPUT_QUEUE")
    assert "queue output sent function=enqueue binding=out" in host.wait_for_log("binding=out")


def test_output_list_sends_one_message_per_element(host: QueueHost) -> None:
    run = uuid.uuid4().hex[:8]
    messages = [f"{run}-a", f"{run}-b", f"{run}-c"]
    status, text = host.post("enqueue-many", json.dumps(messages).encode())
    assert (status, text) == (200, "queued 3")
    texts = [base64.b64decode(t).decode() for t in host.peek("OUTPUT_QUEUE")]
    assert [t for t in texts if t.startswith(run)] == messages


def test_function_raising_sends_nothing(host: QueueHost) -> None:
    body = f"never-{uuid.uuid4()}"
    status, _ = host.post("enqueue-then-fail", body.encode())
    assert status == 500
    time.sleep(0.3)
    texts = [base64.b64decode(t).decode() for t in host.peek("OUTPUT_QUEUE")]
    assert body not in texts


def test_storage_down_at_output_time_fails_the_invocation(host: QueueHost) -> None:
    body = f"lost-{uuid.uuid4()}"
    status, text = host.post("enqueue-down", body.encode())
    assert status == 500
    assert body not in text
    log = host.wait_for_log("Executed 'Functions.enqueue_down' (Failed")
    failed = next(line for line in log.splitlines() if "'Functions.enqueue_down' (Failed" in line)
    assert " ERROR " in failed
    assert "output binding out: adding a message to queue" in failed
    assert "(DownStorage) failed" in failed
    assert "Executed 'Functions.enqueue_down' (Succeeded" not in log


def test_queue_triggered_return_value_goes_to_its_output_queue(host: QueueHost) -> None:
    body = f"hop-{uuid.uuid4()}"
    host.send("FORWARD_QUEUE", _b64(body))
    expected = _b64(f"forwarded {body}")
    assert wait_until(lambda: expected in host.peek("OUTPUT_QUEUE"))
    assert host.wait_for_empty("FORWARD_QUEUE")


# --- messageEncoding none ---------------------------------------------------------------------


def test_encoding_none_passes_plain_text_both_ways(plain_host: PlainHost) -> None:
    host = plain_host.host
    text = f"plain ✓ {uuid.uuid4()}"
    host.send("ITEMS_QUEUE", text)
    (recorded,) = host.wait_for_records(lambda r: r.get("body") == text)
    assert recorded["dequeue_count"] == 1
    host.send("TEXT_QUEUE", _b64(text))
    (as_str,) = host.wait_for_records(lambda r: r.get("function") == "record_text")
    assert as_str["value"] == _b64(text), "not decoded: encoding none"
    status, _ = host.post("enqueue", text.encode())
    assert status == 200
    assert text in host.peek("OUTPUT_QUEUE"), "sent as plain text"
    assert host.wait_for_empty("ITEMS_QUEUE")


def test_message_dequeued_too_often_already_goes_straight_to_poison(
    plain_host: PlainHost,
) -> None:
    host = plain_host.host
    poison = f"{host.queues['ITEMS_QUEUE']}-poison"
    assert wait_until(lambda: plain_host.pre_dequeued in host.peek(poison))
    assert not host.records(lambda r: r.get("body") == plain_host.pre_dequeued)
    log = host.log()
    assert "Message has reached MaxDequeueCount of 5. Moving message to queue " in log
    assert "dequeueCount=6" in log


def test_a_wrong_identity_based_connection_is_refused_with_a_start_up_warning(
    plain_host: PlainHost,
) -> None:
    log = plain_host.host.log()
    warning = next(
        line for line in log.splitlines() if "function=flaky" in line and "credential" in line
    )
    assert " WARNING " in warning
    assert "FlakyStorage__credential must be 'managedidentity'" in warning
    assert "queue listener started function=flaky" not in log


# --- start-up and shutdown --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues_options", "expected"),
    [
        ({"batchSize": 33}, "extensions.queues.batchSize must be at most 32"),
        ({"messageEncoding": "utf8"}, 'messageEncoding must be "base64" or "none"'),
        ({"maxPollingInterval": "00:00:00.050"}, "maxPollingInterval must be at least"),
    ],
    ids=["batch-size", "encoding", "polling"],
)
def test_invalid_queues_options_are_start_up_errors(
    tmp_path: Path, queues_options: dict[str, Any], expected: str
) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"queues": queues_options}})
    )
    with pytest.raises(StartupError, match=re.escape(expected)):
        load_host_config(tmp_path)


def test_shutdown_stops_the_listeners_cleanly(tmp_path: Path, azurite: AzuriteChild) -> None:
    project = _project(tmp_path, azurite, {"maxPollingInterval": "00:00:00.100"})
    child = project.start("queue-host-stop")
    try:
        wait_ready(child)
        project.wait_for_log("queue listener started", count=len(LISTENED))
        body = f"last-{uuid.uuid4()}"
        project.send("ITEMS_QUEUE", _b64(body))
        project.wait_for_records(lambda r: r.get("body") == body)
        started = time.monotonic()
        child.process.send_signal(signal.SIGTERM)
        code = child.process.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        stop_children([child])
        project.close()
    assert code in (0, -signal.SIGTERM), code
    log = project.log()
    assert "queue listeners stopped count=4" in log
    assert log.rstrip().endswith("Host stopped")
    assert "Traceback" not in log
    assert "Task was destroyed" not in log
    assert "Unclosed" not in log


# --- building blocks --------------------------------------------------------------------------


def test_use_development_storage_means_azurite_on_its_default_port() -> None:
    connection = resolve_connection(None, {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert connection.setting == "AzureWebJobsStorage"
    client = QueueClients().queue(connection, "orders")
    assert client.url == "http://127.0.0.1:10001/devstoreaccount1/orders"
    named = resolve_connection("Storage", {"azurewebjobsstorage": "UseDevelopmentStorage=true"})
    assert named.setting == "azurewebjobsstorage", "AzureWebJobs<name>, case-insensitive"
    with pytest.raises(QueueConfigError, match="no storage connection Missing"):
        resolve_connection("Missing", {})
    identity = resolve_connection(
        "Keyless", {"Keyless__queueServiceUri": "https://acct.queue.core.windows.net"}
    )
    assert identity.account.identity_based, "identity-based connections are read as on Azure"


def test_queue_names_are_resolved_lower_cased_and_validated() -> None:
    assert resolve_queue_name("%Q%", {"Q": "Orders-In"}) == "orders-in"
    for bad in ("ab", "orders--in", "-orders", "orders_in", "%NOPE%"):
        with pytest.raises(QueueConfigError):
            resolve_queue_name(bad, {})


def test_message_text_encodings() -> None:
    assert encode_message("héllo", "base64") == _b64("héllo")
    assert decode_message(_b64("héllo"), "base64") == "héllo".encode()
    assert decode_message("aGk=\n", "base64") == b"hi", "white space is ignored, as in .NET"
    assert encode_message(b"raw", "none") == "raw"
    assert decode_message("plain text", "none") == b"plain text"
    for bad in ("not base64!", "aGk", "aGk=x"):
        with pytest.raises(BadMessageEncoding):
            decode_message(bad, "base64")


def test_queues_options_defaults_follow_the_extension(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    options = load_host_config(tmp_path).queues
    assert options == QueuesOptions()
    assert (options.batch_size, options.fetch_threshold) == (16, 8)
    assert (options.max_polling_interval, options.visibility_timeout) == (60.0, 0.0)
    assert (options.max_dequeue_count, options.message_encoding) == (5, "base64")
