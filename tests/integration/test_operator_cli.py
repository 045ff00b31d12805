"""The operator CLI's dead-letters command, run as a subprocess against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from devstack.azurite import ACCOUNT_KEY, AzuriteChild
from messages import DeadLetter, ReconciliationMessage
from messages.emission import Emission
from operator_cli.config import StorageConnection
from operator_cli.dead_letter_store import DeadLetterQueue
from operator_cli.replay import replay
from resilience.durable_queue import StorageQueue
from resilience.outbox import Outbox
from resilience.queue_port import QueueUnavailable
from storage_access import storage_account_from_connection_string
from tests.integration.azurite_fixtures import azurite, unique_name

__all__ = ["azurite"]

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_CLEARED_ENV = (
    "AzureWebJobsStorage",
    "DEAD_LETTER_QUEUE",
    "RECONCILIATION_QUEUE",
    "QUEUE_MESSAGE_ENCODING",
)


@dataclass
class Queues:
    """One test's dead-letter and reconciliation queues on the session's Azurite."""

    connection_string: str = field(repr=False)
    dead_letters: str
    reconciliation: str
    encoding: str = "base64"

    def client(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, name)

    def record(self, *letters: DeadLetter) -> list[str]:
        """Put letters as StorageQueue encodes them; their message ids, in order."""
        texts = []
        for letter in letters:
            text = json.dumps(letter.to_message(), separators=(",", ":"), ensure_ascii=False)
            texts.append(b64(text) if self.encoding == "base64" else text)
        return [self.put_raw(text) for text in texts]

    def record_with_the_app(self, *letters: DeadLetter) -> list[str]:
        """Put letters with the app's own Outbox; ids found by peeking (<= 32)."""

        async def send() -> None:
            async with StorageQueue(
                self.connection_string,
                self.dead_letters,
                encoding=self.encoding,  # type: ignore[arg-type]
            ) as queue:
                # Only dead letters are sent: the reconciliation queue is never touched.
                outbox = Outbox(reconciliation=queue, dead_letters=queue)
                for letter in letters:
                    await outbox.send(Emission.of_dead_letter(letter))

        asyncio.run(send())
        by_request = {letter.request_id: i for i, letter in enumerate(letters)}
        ids = [""] * len(letters)
        for message_id, text in self.peek(self.dead_letters):
            request_id = self.decode(text).get("requestId")
            if request_id in by_request:
                ids[by_request[request_id]] = message_id
        assert all(ids), "every recorded letter is on the queue"
        return ids

    def put_raw(self, text: str) -> str:
        with self.client(self.dead_letters) as client:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            return str(client.send_message(text).id)

    def visible(self, name: str) -> list[tuple[str, str]]:
        """(id, text) of every message visible now, read by receiving (no 32-message cap).

        The messages stay invisible for a minute: call this last on a queue, or use peek.
        """
        with self.client(name) as client:
            pages = client.receive_messages(messages_per_page=32, visibility_timeout=60)
            return [(str(m.id), str(m.content)) for m in pages]

    def peek(self, name: str) -> list[tuple[str, str]]:
        with self.client(name) as client:
            try:
                return [(str(m.id), str(m.content)) for m in client.peek_messages(32)]
            except ResourceNotFoundError:
                return []

    def decode(self, text: str) -> dict[str, Any]:
        raw = base64.b64decode(text, validate=True) if self.encoding == "base64" else text
        parsed: dict[str, Any] = json.loads(raw)
        return parsed


@pytest.fixture
def queues(azurite: AzuriteChild) -> Queues:
    return Queues(azurite.connection_string, unique_name("dl"), unique_name("rec"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    args: Sequence[str],
    *,
    queues: Queues | None = None,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str = "",
    connection: bool = True,
) -> Result:
    """`python -m operator_cli dead-letters ARGS` with a clean environment, wide output."""
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    full_env.update({"PYTHONPATH": str(REPO_ROOT), "COLUMNS": "250", "NO_COLOR": "1"})
    if queues is not None:
        full_env["DEAD_LETTER_QUEUE"] = queues.dead_letters
        full_env["RECONCILIATION_QUEUE"] = queues.reconciliation
        full_env["QUEUE_MESSAGE_ENCODING"] = queues.encoding
        if connection:
            full_env["AzureWebJobsStorage"] = queues.connection_string
    full_env.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "operator_cli", "dead-letters", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    # Whatever happened, the account key never reaches the terminal.
    assert ACCOUNT_KEY not in result.out + result.err
    assert "AccountKey=" not in result.out + result.err
    assert "Traceback" not in result.err, result.err
    return result


def letter(n: int, **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "source": "allocation",
        "kind": "allocation",
        "reason": f"asset system unavailable {n}",
        "detail": f"gave up after 5 attempts ({n})",
        "registrationId": f"reg-{n}",
        "deviceId": f"dev-{n}",
        "assetId": f"AST-{n}",
        "hub": "hub-a.azure-devices.net",
        "requestId": f"req-{n}-{unique_name('')}",
        "request": {"registrationId": f"reg-{n}", "deviceId": f"dev-{n}", "n": n},
        "attempts": 5,
        "firstSeen": T0,
        "deadLetteredAt": T0 + timedelta(minutes=n),
        "replayable": True,
    }
    fields.update(overrides)
    return DeadLetter.model_validate(fields)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_ROW = re.compile(r"\s*[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\s")


def rows(table: str) -> list[str]:
    """The table's body rows: the lines that start with a message id."""
    return [line for line in table.splitlines() if _ROW.match(line)]


# --- list ------------------------------------------------------------------------------------


def test_list_shows_a_table_oldest_first_and_consumes_nothing(
    queues: Queues, tmp_path: Path
) -> None:
    late, early, middle = letter(30), letter(10, replayable=False), letter(20, kind="twinChange")
    ids = queues.record(late, early, middle)

    result = run_cli(["list"], queues=queues, cwd=tmp_path)

    assert result.code == 0, result.err
    lines = rows(result.out)
    positions = [next(i for i, line in enumerate(lines) if mid in line) for mid in ids]
    assert positions[1] < positions[2] < positions[0]  # by dead-lettered at, not queue order
    header = next(line for line in result.out.splitlines() if "dead-lettered at" in line)
    for column in ("id", "dead-lettered at", "source", "kind", "reason", "registration id"):
        assert column in header
    for column in ("device id", "asset id", "attempts", "replayable"):
        assert column in header
    early_row = lines[positions[1]]
    for value in ("2024-05-01 12:10:00Z", "allocation", "asset system unavailable 10"):
        assert value in early_row
    for value in ("reg-10", "dev-10", "AST-10", " 5 ", " no "):
        assert value in early_row
    assert " yes " in lines[positions[0]]
    assert "twinChange" in lines[positions[2]]
    assert f"dead letters in queue {queues.dead_letters}" in result.out
    assert "3 messages" in result.out
    # A narrower terminal stacks the fields; the ids stay whole and in the same order.
    narrow = run_cli(["list"], queues=queues, cwd=tmp_path, env={"COLUMNS": "110"})
    assert narrow.code == 0, narrow.err
    assert max(len(line) for line in narrow.out.splitlines()) <= 110
    at = [narrow.out.index(message_id) for message_id in ids]
    assert at[1] < at[2] < at[0]
    for value in ("reg-10", "dev-10", "AST-10", "replayable no", "asset system unavailable 10"):
        assert value in narrow.out
    # Nothing was consumed or hidden: all three are visible straight away.
    assert sorted(i for i, _ in queues.peek(queues.dead_letters)) == sorted(ids)


def test_list_json_is_ordered_and_carries_each_letter(queues: Queues, tmp_path: Path) -> None:
    letters = [letter(3), letter(1), letter(2)]
    ids = queues.record(*letters)

    result = run_cli(["list", "--json"], queues=queues, cwd=tmp_path)

    assert result.code == 0, result.err
    document = result.json()
    assert document["queue"] == queues.dead_letters
    assert document["count"] == 3
    assert document["maybeMore"] is False
    assert [item["id"] for item in document["items"]] == [ids[1], ids[2], ids[0]]
    first = document["items"][0]
    assert first["readable"] is True
    assert first["insertedOn"]
    assert DeadLetter.model_validate(first["deadLetter"]) == letters[1]
    assert len(queues.peek(queues.dead_letters)) == 3


def test_list_pages_past_32_messages_and_leaves_them_all_visible(
    queues: Queues, tmp_path: Path
) -> None:
    letters = [letter(n) for n in range(40)]
    ids = queues.record(*reversed(letters))  # queue order is the reverse of dead-letter order

    everything = run_cli(["list", "--json"], queues=queues, cwd=tmp_path)
    again = run_cli(["list", "--json"], queues=queues, cwd=tmp_path)
    limited = run_cli(["list", "--json", "--limit", "35"], queues=queues, cwd=tmp_path)
    table = run_cli(["list"], queues=queues, cwd=tmp_path)

    expected = list(reversed(ids))
    assert [item["id"] for item in everything.json()["items"]] == expected
    assert everything.json()["maybeMore"] is False
    assert [item["id"] for item in again.json()["items"]] == expected
    assert limited.json()["count"] == 35
    assert limited.json()["maybeMore"] is True
    assert len({item["id"] for item in limited.json()["items"]}) == 35
    assert "40 messages" in table.out
    assert all(message_id in table.out for message_id in ids)
    shown = run_cli(["show", ids[0], "--json"], queues=queues, cwd=tmp_path)
    assert shown.json()["deadLetter"]["deviceId"] == "dev-39"
    # All 40 are visible right after the listings: hidden ones were released, none deleted.
    assert sorted(i for i, _ in queues.visible(queues.dead_letters)) == sorted(ids)


def test_unreadable_messages_are_listed_not_fatal(queues: Queues, tmp_path: Path) -> None:
    (good,) = queues.record(letter(1))
    not_base64 = queues.put_raw("this is {not base64}")
    not_json = queues.put_raw(b64("{nope"))
    not_object = queues.put_raw(b64("[1, 2]"))
    not_letter = queues.put_raw(b64(json.dumps({"kind": "allocation", "hello": 1})))
    escape = queues.put_raw(b64("\x1b[31mred\x1b[0m"))
    bad = {
        not_base64: "not base64",
        not_json: "not JSON",
        not_object: "not a JSON object",
        not_letter: "not a dead letter",
        escape: "not JSON",
    }

    table = run_cli(["list"], queues=queues, cwd=tmp_path)
    listed = run_cli(["list", "--json"], queues=queues, cwd=tmp_path)

    assert table.code == 0, table.err
    lines = rows(table.out)
    for message_id, problem in bad.items():
        row = next(line for line in lines if message_id in line)
        assert "unreadable" in row
        assert problem in row
    assert "6 messages" in table.out
    assert "\x1b" not in table.out
    items = {item["id"]: item for item in listed.json()["items"]}
    assert items[good]["readable"] is True
    for message_id, problem in bad.items():
        assert items[message_id]["readable"] is False
        assert problem in items[message_id]["problem"]
    assert items[not_base64]["content"] == "this is {not base64}"
    assert "source: Field required" in items[not_letter]["problem"]

    shown = run_cli(["show", escape], queues=queues, cwd=tmp_path)
    assert shown.code == 0, shown.err
    assert "unreadable message" in shown.out
    assert "\x1b" not in shown.out
    assert b64("\x1b[31mred\x1b[0m") in shown.out

    refused = run_cli(["replay", not_json], queues=queues, cwd=tmp_path)
    assert refused.code == 1
    assert "unreadable" in refused.out
    assert len(queues.peek(queues.dead_letters)) == 6
    assert queues.peek(queues.reconciliation) == []


def test_list_of_a_queue_that_does_not_exist_is_empty(queues: Queues, tmp_path: Path) -> None:
    result = run_cli(["list"], queues=queues, cwd=tmp_path)
    assert result.code == 0, result.err
    assert f"no dead letters in queue {queues.dead_letters}" in result.out
    assert run_cli(["list", "--json"], queues=queues, cwd=tmp_path).json()["items"] == []


# --- show ------------------------------------------------------------------------------------


def test_show_prints_one_letter_in_full(queues: Queues, tmp_path: Path) -> None:
    shown_letter = letter(7, request={"registrationId": "reg-7", "csr": None, "nested": {"a": 1}})
    other, message_id = queues.record(letter(8), shown_letter)

    panel = run_cli(["show", message_id], queues=queues, cwd=tmp_path)
    as_json = run_cli(["show", message_id, "--json"], queues=queues, cwd=tmp_path)

    assert panel.code == 0, panel.err
    for value in (
        f"dead letter {message_id}",
        "asset system unavailable 7",
        "gave up after 5 attempts (7)",
        "reg-7",
        "dev-7",
        "AST-7",
        "hub-a.azure-devices.net",
        str(shown_letter.request_id),
        "2024-05-01 12:07:00Z",
        '"nested"',
        f"dead-letters replay {message_id}",
    ):
        assert value in panel.out, value
    assert "dev-8" not in panel.out
    document = as_json.json()
    assert document["id"] == message_id
    assert document["queue"] == queues.dead_letters
    assert DeadLetter.model_validate(document["deadLetter"]) == shown_letter
    assert {i for i, _ in queues.peek(queues.dead_letters)} == {other, message_id}


def test_show_says_why_a_letter_is_not_replayable(queues: Queues, tmp_path: Path) -> None:
    (message_id,) = queues.record(letter(1, replayable=False, reason="spoofed replacement"))
    result = run_cli(["show", message_id], queues=queues, cwd=tmp_path)
    assert result.code == 0, result.err
    assert "no: it is marked not replayable: spoofed replacement" in result.out
    assert "replay with" not in result.out


def test_unknown_id_is_exit_1(queues: Queues, tmp_path: Path) -> None:
    queues.record(letter(1))
    for action in ("show", "replay"):
        result = run_cli([action, "no-such-id"], queues=queues, cwd=tmp_path)
        assert result.code == 1, (action, result)
        assert "no message with id no-such-id" in result.err
        assert queues.dead_letters in result.err
    assert len(queues.peek(queues.dead_letters)) == 1
    assert queues.peek(queues.reconciliation) == []


# --- replay ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base64", "none"])
def test_replay_one_queues_it_for_reconciliation_then_removes_it(
    queues: Queues, tmp_path: Path, encoding: str
) -> None:
    queues.encoding = encoding
    replayed = letter(1, kind="twinChange", source="sync", attempts=3)
    message_id, other = queues.record_with_the_app(replayed, letter(2))

    result = run_cli(["replay", message_id], queues=queues, cwd=tmp_path)

    assert result.code == 0, result.err
    assert "replayed" in result.out
    assert f"replayed 1 of 1 onto queue {queues.reconciliation}" in result.out
    ((_, text),) = queues.peek(queues.reconciliation)
    message = ReconciliationMessage.model_validate(queues.decode(text))
    assert message.kind == "twinChange"
    assert message.reason == "replayed from dead letters"
    assert message.detail == replayed.reason
    assert message.device_id == replayed.device_id
    assert message.asset_id == replayed.asset_id
    assert message.hub == replayed.hub
    assert message.request_id == replayed.request_id
    assert message.event == replayed.request
    assert message.attempts == 4
    assert message.permanent is False
    assert [i for i, _ in queues.peek(queues.dead_letters)] == [other]


class RecordingSender:
    """Stands in for the reconciliation queue to see what the dead-letter queue held meanwhile."""

    def __init__(self, queues: Queues, fail: bool = False) -> None:
        self._queues = queues
        self._fail = fail
        self.sent: list[dict[str, Any]] = []
        self.letters_while_sending: list[int] = []

    async def send(self, message: Mapping[str, Any]) -> None:
        with self._queues.client(self._queues.dead_letters) as client:
            count = client.get_queue_properties().approximate_message_count
        self.letters_while_sending.append(int(count or 0))
        if self._fail:
            raise QueueUnavailable("queue rec: no answer within 5 s", queue_name="rec")
        self.sent.append(dict(message))


async def test_replay_queues_before_it_deletes(queues: Queues) -> None:
    (message_id,) = queues.record(letter(1))
    sender = RecordingSender(queues)
    connection = StorageConnection(
        storage_account_from_connection_string(queues.connection_string, "test"), "test"
    )
    async with DeadLetterQueue(connection, queues.dead_letters, "base64") as queue:
        outcomes = await replay(queue, sender, [message_id])
    assert [outcome.status for outcome in outcomes] == ["replayed"]
    assert sender.letters_while_sending == [1]  # the letter was still there when sent
    assert len(sender.sent) == 1
    assert queues.peek(queues.dead_letters) == []


async def test_a_failed_send_keeps_the_letter_and_stops(queues: Queues) -> None:
    ids = queues.record(letter(1), letter(2))
    sender = RecordingSender(queues, fail=True)
    connection = StorageConnection(
        storage_account_from_connection_string(queues.connection_string, "test"), "test"
    )
    async with DeadLetterQueue(connection, queues.dead_letters, "base64") as queue:
        outcomes = await replay(queue, sender, ids)
    assert sorted(outcome.status for outcome in outcomes) == ["failed", "skipped"]
    assert "the dead letter was kept" in outcomes[0].detail
    assert len(sender.letters_while_sending) == 1
    assert sorted(i for i, _ in queues.peek(queues.dead_letters)) == sorted(ids)


def test_replay_refuses_a_letter_marked_not_replayable(queues: Queues, tmp_path: Path) -> None:
    (message_id,) = queues.record(letter(1, replayable=False, reason="invalid attestation"))

    result = run_cli(["replay", message_id], queues=queues, cwd=tmp_path)

    assert result.code == 1
    assert "refused" in result.out
    assert "not replayable: invalid attestation" in result.out
    assert [i for i, _ in queues.peek(queues.dead_letters)] == [message_id]
    assert queues.peek(queues.reconciliation) == []


def test_replay_all_with_yes_replays_every_replayable_letter(
    queues: Queues, tmp_path: Path
) -> None:
    replayable = [letter(1), letter(2, kind="assetChange"), letter(3, kind="twinChange")]
    ids = queues.record(*replayable, letter(4, replayable=False))
    unreadable = queues.put_raw("garbage")

    result = run_cli(["replay", "--all", "--yes"], queues=queues, cwd=tmp_path)

    assert result.code == 0, result.err
    assert f"replayed 3 of 3 onto queue {queues.reconciliation}" in result.out
    queued = [
        ReconciliationMessage.model_validate(queues.decode(text))
        for _, text in queues.peek(queues.reconciliation)
    ]
    assert sorted(str(m.request_id) for m in queued) == sorted(
        str(letter.request_id) for letter in replayable
    )
    assert sorted(m.kind for m in queued) == ["allocation", "assetChange", "twinChange"]
    assert sorted(i for i, _ in queues.peek(queues.dead_letters)) == sorted([ids[3], unreadable])


def test_replay_all_asks_first(queues: Queues, tmp_path: Path) -> None:
    ids = queues.record(letter(1), letter(2), letter(3, replayable=False))

    declined = run_cli(["replay", "--all"], queues=queues, cwd=tmp_path, stdin="n\n")
    no_answer = run_cli(["replay", "--all"], queues=queues, cwd=tmp_path, stdin="")

    for result in (declined, no_answer):
        assert result.code == 1
        assert f"replay 2 dead letter(s) from queue {queues.dead_letters}" in result.err
        assert "(1 not replayable will stay)" in result.err
        assert "nothing replayed" in result.err
    assert queues.peek(queues.reconciliation) == []
    assert len(queues.peek(queues.dead_letters)) == 3

    accepted = run_cli(["replay", "--all"], queues=queues, cwd=tmp_path, stdin="y\n")
    assert accepted.code == 0, accepted.err
    assert len(queues.peek(queues.reconciliation)) == 2
    assert [i for i, _ in queues.peek(queues.dead_letters)] == [ids[2]]


def test_ctrl_c_at_the_question_replays_nothing(queues: Queues, tmp_path: Path) -> None:
    queues.record(letter(1))
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        AzureWebJobsStorage=queues.connection_string,
        DEAD_LETTER_QUEUE=queues.dead_letters,
        RECONCILIATION_QUEUE=queues.reconciliation,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "operator_cli", "dead-letters", "replay", "--all"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        asked = b""
        while b"[y/N]" not in asked:
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk, f"the CLI ended without asking: {asked!r}"
            asked += chunk
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)  # no answer needed: Ctrl-C ends the question
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    assert process.returncode == 130
    assert queues.peek(queues.reconciliation) == []
    assert len(queues.peek(queues.dead_letters)) == 1


def test_replay_all_with_nothing_replayable_does_nothing(queues: Queues, tmp_path: Path) -> None:
    queues.record(letter(1, replayable=False))
    result = run_cli(["replay", "--all"], queues=queues, cwd=tmp_path)
    assert result.code == 0, result.err
    assert "nothing to replay" in result.out
    assert queues.peek(queues.reconciliation) == []


def test_replay_goes_to_the_queue_named_by_the_flag(queues: Queues, tmp_path: Path) -> None:
    (message_id,) = queues.record(letter(1))
    elsewhere = unique_name("other")
    result = run_cli(
        ["replay", message_id, "--reconciliation-queue", elsewhere], queues=queues, cwd=tmp_path
    )
    assert result.code == 0, result.err
    assert len(queues.peek(elsewhere)) == 1
    assert queues.peek(queues.reconciliation) == []


# --- configuration ---------------------------------------------------------------------------


def test_missing_connection_names_the_three_sources(queues: Queues, tmp_path: Path) -> None:
    result = run_cli(["list"], queues=queues, cwd=tmp_path, connection=False)
    assert result.code == 2
    for source in ("--connection-string", "AzureWebJobsStorage", ".devstack/stack.json"):
        assert source in result.err
    assert result.out == ""


def test_connection_from_the_flag_and_from_the_local_stack_file(
    queues: Queues, tmp_path: Path
) -> None:
    (message_id,) = queues.record(letter(1))
    by_flag = run_cli(
        ["list", "--json", "--connection-string", queues.connection_string],
        queues=queues,
        cwd=tmp_path,
        connection=False,
    )
    assert [item["id"] for item in by_flag.json()["items"]] == [message_id]

    stack_dir = tmp_path / ".devstack"
    stack_dir.mkdir()
    (stack_dir / "stack.json").write_text(
        json.dumps({"storage": {"connectionString": queues.connection_string}})
    )
    by_stack = run_cli(["list", "--json"], queues=queues, cwd=tmp_path, connection=False)
    assert [item["id"] for item in by_stack.json()["items"]] == [message_id]

    (stack_dir / "stack.json").write_text(json.dumps({"storage": {}}))
    broken = run_cli(["list"], queues=queues, cwd=tmp_path, connection=False)
    assert broken.code == 2
    assert "stack.json has neither storage.connectionString nor storage.identitySettings" in (
        broken.err
    )


def test_queue_flag_overrides_the_setting(queues: Queues, tmp_path: Path) -> None:
    (message_id,) = queues.record(letter(1))
    elsewhere = run_cli(
        ["list", "--json", "--queue", unique_name("empty")], queues=queues, cwd=tmp_path
    )
    assert elsewhere.json()["items"] == []
    here = run_cli(["list", "--json", "--queue", queues.dead_letters], queues=queues, cwd=tmp_path)
    assert [item["id"] for item in here.json()["items"]] == [message_id]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["list", "--queue", "Bad_Name"], {}, "is not a queue name"),
        (["list"], {"DEAD_LETTER_QUEUE": "x"}, "DEAD_LETTER_QUEUE"),
        (["list"], {"QUEUE_MESSAGE_ENCODING": "utf8"}, "QUEUE_MESSAGE_ENCODING"),
        (["replay", "--all", "--reconciliation-queue", "No_Good"], {}, "is not a queue name"),
        (["list"], {"AzureWebJobsStorage": "nonsense"}, "AzureWebJobsStorage is not valid"),
    ],
)
def test_bad_configuration_is_exit_2(
    queues: Queues, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli(args, queues=queues, cwd=tmp_path, env=env)
    assert result.code == 2, result
    assert message in result.err


@pytest.mark.parametrize(
    "args",
    [["replay"], ["replay", "some-id", "--all"], ["list", "--limit", "0"], ["show"]],
)
def test_bad_usage_is_exit_2(queues: Queues, tmp_path: Path, args: list[str]) -> None:
    result = run_cli(args, queues=queues, cwd=tmp_path)
    assert result.code == 2
    assert "usage:" in result.err


def test_unreachable_storage_is_a_clear_error(queues: Queues, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = queues.connection_string.replace(
        queues.connection_string.split("QueueEndpoint=")[1].split(";")[0],
        f"http://127.0.0.1:{port}/devstoreaccount1",
    )
    result = run_cli(["list"], queues=queues, cwd=tmp_path, env={"AzureWebJobsStorage": closed})
    assert result.code == 1
    assert "cannot reach the queue service" in result.err
    assert "AzureWebJobsStorage" in result.err
