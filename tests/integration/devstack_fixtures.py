"""The whole devstack as `make run` starts it (on free ports), for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HUB_NAMES = ("hub-us-east.azure-devices.net", "hub-eu-west.azure-devices.net")


def start_devstack(
    data_dir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`env`: extra environment for the stack (the process environment wins over
    local.settings.json in the function host, so POLICY_FILE here changes the app's policy)."""
    args = [sys.executable, "-m", "devstack", "up", "--data-dir", str(data_dir)]
    args += ["--function-port", "0", "--asset-port", "0", "--dps-port", "0"]
    args += ["--blob-port", "0", "--queue-port", "0", "--table-port", "0", "--identity-port", "0"]
    for hub in HUB_NAMES:
        args += ["--hub-port", f"{hub}=0"]
    args += ["--dps-retry-scale", "0.01", "--event-retry-scale", "0.05"]
    process = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    stack_file = data_dir / "stack.json"
    deadline = time.monotonic() + 90
    while not stack_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"devstack did not start:\n{output[-4000:]}")
        time.sleep(0.1)
    return process, json.loads(stack_file.read_text())


def stop_devstack(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One full stack per test module; yields its stack.json."""
    process, stack = start_devstack(tmp_path_factory.mktemp("devstack"))
    try:
        yield stack
    finally:
        stop_devstack(process)
