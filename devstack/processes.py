"""Start devstack parts as child processes that die with their parent, and wait until ready."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux only: the kernel sends SIGTERM to the child if the parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ChildFailed(RuntimeError):
    """A devstack part exited or did not become ready in time."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    log_path: Path | None
    info: dict[str, Any] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    """Azurite persists its tables only on SIGINT, so it asks for that one."""

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_child(
    name: str,
    module: str,
    args: Sequence[str],
    *,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
    log_to_file: bool = True,
    cwd: Path | None = None,
) -> Child:
    """Start `python -m module args... --ready-file F`; stdout/stderr go to run_dir/<name>.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ready_file = run_dir / f"{name}.ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = run_dir / f"{name}.log" if log_to_file else None
    out: IO[bytes] | None = log_path.open("wb") if log_path else None
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args, "--ready-file", str(ready_file)],
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        env=full_env,
        cwd=cwd,
        preexec_fn=_die_with_parent,
    )
    if out is not None:
        out.close()
    return Child(name=name, process=process, ready_file=ready_file, log_path=log_path)


def wait_ready(child: Child, timeout: float = 30.0) -> Child:
    """Block until the child wrote its ready file; raise ChildFailed with its log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.ready_file.exists():
            child.info = json.loads(child.ready_file.read_text())
            return child
        code = child.process.poll()
        if code is not None:
            raise ChildFailed(f"{child.name} exited with code {code}:\n{child.log_tail()}")
        time.sleep(0.02)
    stop_children([child])
    raise ChildFailed(f"{child.name} was not ready after {timeout:.0f} s:\n{child.log_tail()}")


def stop_children(children: Sequence[Child], timeout: float = 8.0) -> None:
    """Signal all (SIGTERM unless a child asks otherwise), wait, then SIGKILL what is left."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(child.stop_signal)
    deadline = time.monotonic() + timeout
    for child in children:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            child.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.ready_file.unlink(missing_ok=True)


def start_command(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start any program (not a devstack module) the same way: dies with us, logs to <name>.log.

    Such programs write no ready file: wait for them with wait_listening(). Ours is written
    there once they are ready, so a reader of run_dir sees the same files for every part.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    ready_file = run_dir / f"{name}.ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = run_dir / f"{name}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    return Child(name=name, process=process, ready_file=ready_file, log_path=log_path)


def wait_listening(
    children: Sequence[tuple[Child, int]], *, host: str = "127.0.0.1", timeout: float = 30.0
) -> None:
    """Block until each child's port accepts TCP connections, then write its ready file.

    If one exits or is still not listening at the deadline, all of them are stopped and
    ChildFailed carries that one's log.
    """
    deadline = time.monotonic() + timeout
    pending = list(children)
    while pending:
        for child, port in list(pending):
            code = child.process.poll()
            if code is not None:
                stop_children([c for c, _ in children])
                raise ChildFailed(f"{child.name} exited with code {code}:\n{child.log_tail()}")
            if _accepts(host, port):
                child.info = {
                    "url": f"http://{host}:{port}",
                    "port": port,
                    "pid": child.process.pid,
                }
                tmp = child.ready_file.with_name(child.ready_file.name + ".tmp")
                tmp.write_text(json.dumps(child.info))
                os.replace(tmp, child.ready_file)
                pending.remove((child, port))
        if pending and time.monotonic() >= deadline:
            child, port = pending[0]
            stop_children([c for c, _ in children])
            raise ChildFailed(
                f"{child.name} was not listening on {host}:{port} after {timeout:.0f} s:\n"
                f"{child.log_tail()}"
            )
        if pending:
            time.sleep(0.05)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
