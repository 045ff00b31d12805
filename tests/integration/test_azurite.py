"""Azurite in the devstack: real node processes from node_modules, started and stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from azure.storage.queue import QueueClient

from devstack.azurite import (
    ACCOUNT_KEY,
    AzuriteChild,
    AzuriteNotInstalled,
    start_azurite,
)
from devstack.processes import ChildFailed, stop_children
from devstack.serving import PortInUse
from tests.integration.azurite_fixtures import azurite, unique_name

__all__ = ["azurite"]

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    """Every process below pid (children, grandchildren...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive:
            return set()
        time.sleep(0.05)
    return {pid for pid in pids if _alive(pid)}


def test_serves_queue_and_table_on_free_ports_with_explicit_connection_string(
    azurite: AzuriteChild,
) -> None:
    assert azurite.queue_port not in (0, azurite.table_port)
    assert azurite.table_port != 0
    assert azurite.queue_url == f"http://127.0.0.1:{azurite.queue_port}/devstoreaccount1"
    assert azurite.table_url == f"http://127.0.0.1:{azurite.table_port}/devstoreaccount1"
    assert azurite.connection_string == (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};QueueEndpoint={azurite.queue_url};"
        f"TableEndpoint={azurite.table_url}"
    )
    assert "BlobEndpoint" not in azurite.connection_string
    assert [child.name for child in azurite.children] == ["azurite-queue", "azurite-table"]
    for child in azurite.children:
        assert child.log_path is not None
        assert child.log_path.exists()
        assert json.loads(child.ready_file.read_text())["pid"] == child.process.pid


async def test_table_service_answers_http(azurite: AzuriteChild) -> None:
    """An unsigned request is refused by the table service itself (not a dead port)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{azurite.table_url}/Tables", headers={"Accept": "application/json"}) as resp,
    ):
        body = await resp.text()
    assert resp.status == 403
    assert "AuthorizationFailure" in body or "AuthenticationFailed" in body


def test_stop_leaves_no_process_and_frees_the_ports(tmp_path: Path) -> None:
    running = start_azurite(tmp_path / "run", tmp_path / "data", queue_port=0, table_port=0)
    pids = {child.process.pid for child in running.children}
    pids |= {grandchild for pid in pids for grandchild in _descendants(pid)}
    assert all(_alive(pid) for pid in pids)

    stop_children(running.children)

    assert _wait_gone(pids, timeout=2) == set()
    assert not _accepts(running.queue_port)
    assert not _accepts(running.table_port)
    assert not any((tmp_path / "run").glob("*.ready.json"))
    queue_log = (tmp_path / "run" / "azurite-queue.log").read_text()
    assert f"listens on http://127.0.0.1:{running.queue_port}" in queue_log


def test_azurite_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from devstack.azurite import start_azurite\n"
        f"a = start_azurite(Path({str(tmp_path / 'run')!r}), Path({str(tmp_path / 'data')!r}),"
        " queue_port=0, table_port=0)\n"
        "print(json.dumps([c.process.pid for c in a.children]), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = set(json.loads(parent.stdout.readline()))
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(pids, timeout=10) == set()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_data_persists_across_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    name = unique_name("persist")
    first = start_azurite(tmp_path / "run", data_dir, queue_port=0, table_port=0)
    try:
        with QueueClient.from_connection_string(first.connection_string, name) as client:
            client.create_queue()
            client.send_message("kept across restarts")
    finally:
        stop_children(first.children)

    second = start_azurite(tmp_path / "run", data_dir, queue_port=0, table_port=0)
    try:
        with QueueClient.from_connection_string(second.connection_string, name) as client:
            contents = [message.content for message in client.peek_messages(max_messages=32)]
    finally:
        stop_children(second.children)
    assert contents == ["kept across restarts"]


def test_missing_node_modules_says_to_run_make_install(tmp_path: Path) -> None:
    with pytest.raises(AzuriteNotInstalled, match=r"run `make install` \(npm ci\)"):
        start_azurite(tmp_path / "run", tmp_path / "data", repo_root=tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_taken_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port} is already in use"):
            start_azurite(tmp_path / "run", tmp_path / "data", queue_port=port, table_port=0)
    assert not (tmp_path / "run").exists()


def test_a_child_that_exits_early_fails_with_its_log_and_stops_the_other(
    tmp_path: Path,
) -> None:
    """Stand-ins for the two programs: the queue one fails at once, the table one would run."""
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "azurite-queue").write_text(
        "#!/bin/sh\necho 'queue: cannot open the db' >&2\nexit 3\n"
    )
    (bin_dir / "azurite-table").write_text("#!/bin/sh\nexec sleep 60\n")
    for program in bin_dir.iterdir():
        program.chmod(0o755)

    with pytest.raises(ChildFailed, match=r"(?s)azurite-queue exited with code 3.*cannot open"):
        start_azurite(
            tmp_path / "run", tmp_path / "data", queue_port=0, table_port=0, repo_root=tmp_path
        )

    left = [
        pid
        for pid in _descendants(os.getpid())
        if _alive(pid) and "sleep" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]
    assert left == []
