"""`python -m devstack up`: the whole local stack in the foreground; Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from devstack.processes import Child, ChildFailed, start_child, stop_children, wait_ready
from devstack.serving import write_ready_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".devstack"


@dataclass(frozen=True)
class StackOptions:
    data_dir: Path = DEFAULT_DATA_DIR
    function_port: int = 7071
    asset_port: int = 7080
    function_key: str | None = None
    script_root: Path = REPO_ROOT


class _Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def local_settings(script_root: Path, console: Console) -> dict[str, str]:
    """local.settings.json, created from the sample on first run (it is git-ignored)."""
    path = script_root / "local.settings.json"
    if not path.exists():
        shutil.copyfile(script_root / "local.settings.sample.json", path)
        console.print(f"[dim]created {path.name} from local.settings.sample.json[/dim]")
    values = json.loads(path.read_text()).get("Values", {})
    return {str(k): str(v) for k, v in values.items()}


def run_stack(options: StackOptions, console: Console | None = None) -> int:
    console = console or Console()
    data_dir = options.data_dir.resolve()
    run_dir = data_dir / "run"
    stack_file = data_dir / "stack.json"
    running = running_stack(stack_file)
    if running:
        console.print(
            f"[red]a stack is already running from {stack_file}[/red] "
            f"(pids {', '.join(map(str, running))}); stop it with Ctrl-C first"
        )
        return 1
    settings = local_settings(options.script_root, console)
    asset_key = settings.get("ASSET_API_KEY") or "devstack-asset-key"

    children: list[Child] = []
    wrote_stack_file = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        assets = start_child(
            "asset-service",
            "devstack.asset_service",
            [
                "--port",
                str(options.asset_port),
                "--data-dir",
                str(data_dir / "assets"),
                "--api-key",
                asset_key,
            ],
            run_dir=run_dir,
        )
        children.append(assets)
        wait_ready(assets)
        host_args = [
            "--script-root",
            str(options.script_root),
            "--port",
            str(options.function_port),
        ]
        if options.function_key:
            host_args += ["--function-key", options.function_key]
        host = start_child(
            "function-host",
            "devstack.function_host",
            host_args,
            run_dir=run_dir,
            cwd=options.script_root,
            env={"ASSET_API_URL": assets.url, "ASSET_API_KEY": asset_key},
        )
        children.append(host)
        wait_ready(host)
        description = describe(assets, host, options, asset_key, data_dir)
        write_ready_file(stack_file, description)
        wrote_stack_file = True
        print_summary(console, description, run_dir)
        while True:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    raise ChildFailed(f"{child.name} exited with code {code}:\n{child.log_tail()}")
            time.sleep(0.2)
    except _Stop:
        console.print("\nstopping the stack...")
        return 0
    except ChildFailed as exc:
        console.print(f"[red]devstack failed:[/red] {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children)
        if wrote_stack_file:
            stack_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        console.print("[dim]all devstack processes stopped[/dim]")


def running_stack(stack_file: Path) -> list[int]:
    """Pids of a stack that is still alive according to its stack.json, else []."""
    try:
        pids = [int(pid) for pid in json.loads(stack_file.read_text()).get("pids", {}).values()]
    except (OSError, ValueError):
        return []
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive.append(pid)
    return alive


def describe(
    assets: Child, host: Child, options: StackOptions, asset_key: str, data_dir: Path
) -> dict[str, Any]:
    """What .devstack/stack.json holds: for people and for scripts (the simulator, tests)."""
    allocate = f"{host.url}/api/allocate"
    return {
        "functionHost": host.url,
        "allocateUrl": allocate,
        "functionKey": options.function_key,
        "assetApi": assets.url,
        "assetApiKey": asset_key,
        "dataDir": str(data_dir),
        "logs": {child.name: str(child.log_path) for child in (assets, host)},
        "pids": {child.name: child.process.pid for child in (assets, host)},
        "startedAt": datetime.now(UTC).isoformat(),
    }


def print_summary(console: Console, description: dict[str, Any], run_dir: Path) -> None:
    table = Table(title="devstack is running", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("where", overflow="fold")
    table.add_column("logs", overflow="fold")
    logs = {name: _short(Path(path)) for name, path in description["logs"].items()}
    table.add_row("dev functions host", description["functionHost"], logs["function-host"])
    table.add_row("  allocation webhook", f"POST {description['allocateUrl']}", "")
    table.add_row("reference asset service", description["assetApi"], logs["asset-service"])
    console.print(table)
    console.print(f"stack description: {_short(Path(description['dataDir']) / 'stack.json')}")
    console.print("try:   .venv/bin/python -m devstack.simulate --devices 50")
    console.print("Ctrl-C stops everything.")


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the local stack in the foreground")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up.add_argument("--function-port", type=int, default=7071)
    up.add_argument("--asset-port", type=int, default=7080)
    up.add_argument("--function-key", help="enforce this function key (Core Tools does not)")
    args = parser.parse_args(argv)
    options = StackOptions(
        data_dir=args.data_dir,
        function_port=args.function_port,
        asset_port=args.asset_port,
        function_key=args.function_key,
    )
    return run_stack(options)


if __name__ == "__main__":
    sys.exit(main())
