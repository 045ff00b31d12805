"""`python -m devstack up`: the whole local stack in the foreground; Ctrl-C stops all of it.

Start order follows the dependencies: TLS -> the identity stand-in (keyless mode: every other
part verifies its tokens) -> Azurite (the app's storage) -> asset service (its change events go
to the function host's Event Grid endpoint) -> IoT Hub emulator (its twin-change notifications
go to the function host) -> dev functions host -> DPS emulator (its enrollment group calls the
webhook and creates devices on the hubs). The function host's port is fixed first, since the
senders need its address.

`--keyless` runs the app as a production deployment with a managed identity runs: Azurite over
HTTPS with OAuth, the hubs and the asset service taking bearer tokens, and no key in the app's
settings. `--core-tools` starts everything but the functions host and writes the settings that
Core Tools' `func start` needs instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from devstack.app_settings import (
    ASSET_API_AUDIENCE,
    StackEndpoints,
    keyed_settings,
    keyless_settings,
)
from devstack.azurite import AzuriteChild, AzuriteHttps, restart_service, start_azurite
from devstack.core_tools import CORE_TOOLS_SETTINGS, write_core_tools_settings
from devstack.enrollment import DEVSTACK_GROUPS, apply_groups
from devstack.identity import IdentityEndpoint
from devstack.processes import Child, ChildFailed, start_child, stop_children, wait_ready
from devstack.serving import write_ready_file
from devstack.tls import DevstackTls, ensure_tls

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".devstack"
ASSET_EVENTS_PATH = "/runtime/webhooks/eventgrid?functionName=asset_changed"
"""Where the asset service's change events go: the sync function's Event Grid endpoint."""
TWIN_EVENTS_HUB = "twin-changes"
"""The Event Hub name the hubs' twin-change notifications are routed to (one for all hubs)."""
DEFAULT_HUBS = {"hub-us-east.azure-devices.net": 8443, "hub-eu-west.azure-devices.net": 8444}


@dataclass(frozen=True)
class StackOptions:
    data_dir: Path = DEFAULT_DATA_DIR
    function_port: int = 7071
    asset_port: int = 7080
    dps_port: int = 9443
    dps_service_port: int = 9444
    blob_port: int = 10000
    queue_port: int = 10001
    table_port: int = 10002
    identity_port: int = 7090
    keyless: bool = False
    """No key in the app's settings: every call it makes carries a token from the identity
    stand-in."""
    function_host: bool = True
    """False: leave port function_port to Core Tools (`func start`)."""
    hubs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_HUBS))
    function_key: str | None = None
    script_root: Path = REPO_ROOT
    dps_retry_scale: float = 1.0
    event_retry_scale: float = 1.0
    approval_ttl_hours: float = 72.0
    unbound_approval_window_seconds: float = 0.0
    host_env: dict[str, str] = field(default_factory=dict)
    """Extra app settings for the function host (tests use host.json overrides here)."""

    @classmethod
    def on_free_ports(cls, data_dir: Path, **options: Any) -> StackOptions:
        """Every part on a port the system picks, so that stacks run side by side."""
        return cls(
            data_dir=data_dir,
            function_port=0,
            asset_port=0,
            dps_port=0,
            dps_service_port=0,
            blob_port=0,
            queue_port=0,
            table_port=0,
            identity_port=0,
            hubs=dict.fromkeys(DEFAULT_HUBS, 0),
            **options,
        )


class _Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def local_settings(script_root: Path, console: Console) -> dict[str, str]:
    """local.settings.json, created from the sample on first run (it is git-ignored)."""
    path = script_root / "local.settings.json"
    if not path.exists():
        shutil.copyfile(script_root / "local.settings.sample.json", path)
        console.print(f"[dim]created {path.name} from local.settings.sample.json[/dim]")
    values = {str(k): str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()}
    sample = json.loads((script_root / "local.settings.sample.json").read_text())["Values"]
    missing = sorted(set(sample) - set(values))
    if missing:
        console.print(
            f"[yellow]{path.name} lacks {', '.join(missing)} (added to the sample since it was"
            " created); using the sample's values[/yellow]"
        )
    return values | {name: str(sample[name]) for name in missing}


class LocalStack:
    """The running parts, started in dependency order; tests drive it directly (restarts)."""

    def __init__(self, options: StackOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.data_dir = options.data_dir.resolve()
        self.run_dir = self.data_dir / "run"
        self.children: list[Child] = []
        self._recipes: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
        self.azurite: AzuriteChild | None = None
        self.tls: DevstackTls = ensure_tls(self.data_dir)
        self.settings = local_settings(options.script_root, console)
        self.asset_key = self.settings.get("ASSET_API_KEY") or "devstack-asset-key"
        self.app_settings: dict[str, str] = {}
        """What the stack told the app (keyed or keyless), once started."""

    def _start(self, name: str, module: str, args: list[str], **kwargs: Any) -> Child:
        child = wait_ready(start_child(name, module, args, run_dir=self.run_dir, **kwargs))
        self.children.append(child)
        # Remembered with the port actually bound, so a restart comes back at the same address.
        port = str(child.info.get("port", ""))
        bound = {"--port": port, "--service-port": str(child.info.get("servicePort", ""))}
        fixed = [
            bound[previous] if previous in bound and arg == "0" and bound[previous] else arg
            for previous, arg in zip(["", *args[:-1]], args, strict=True)
        ]
        self._recipes[name] = (module, fixed, kwargs)
        return child

    def restart(self, name: str, *, kill: bool = True) -> Child:
        """Stop one part (SIGKILL by default, as a crash would) and start it again."""
        self.stop(name, kill=kill)
        return self.start_again(name)

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Stop one part (gracefully, or SIGKILL as a crash), keeping its recipe."""
        child = next(child for child in self.children if child.name == name)
        if kill:
            child.process.kill()
            child.process.wait()
        else:
            stop_children([child])
        self.children.remove(child)

    def stop_storage(self, service: str) -> None:
        """Take Azurite's queue or table service down (it persists on the way, SIGINT)."""
        assert self.azurite is not None, "start() first"
        child = getattr(self.azurite, service)
        stop_children([child])
        self.children.remove(child)

    def start_storage(self, service: str) -> None:
        assert self.azurite is not None, "start() first"
        self.azurite = restart_service(self.azurite, service, self.run_dir)
        self.children.append(getattr(self.azurite, service))

    def start_again(self, name: str) -> Child:
        module, args, kwargs = self._recipes[name]
        return self._start(name, module, args, **kwargs)

    def start(self) -> dict[str, Any]:
        options = self.options
        function_port = options.function_port or free_port()
        function_url = f"http://127.0.0.1:{function_port}"
        identity = self._start_identity() if options.keyless else None
        azurite = start_azurite(
            self.run_dir,
            self.data_dir / "azurite",
            blob_port=options.blob_port,
            queue_port=options.queue_port,
            table_port=options.table_port,
            https=AzuriteHttps.from_tls(self.tls) if identity else None,
        )
        self.children.extend(azurite.children)
        self.azurite = azurite
        token_args = (
            ["--token-issuer-key", str(identity.public_key_file)] if identity is not None else []
        )
        assets = self._start(
            "asset-service",
            "devstack.asset_service",
            ["--port", str(options.asset_port), "--data-dir", str(self.data_dir / "assets")]
            + ["--api-key", self.asset_key]
            + ["--event-grid-url", f"{function_url}{ASSET_EVENTS_PATH}"]
            # As infra/'s topic delivers them: CloudEvents, with the write's trace context.
            + ["--event-schema", "cloudevents"]
            + ["--event-retry-scale", str(options.event_retry_scale)]
            + ["--approval-ttl-hours", repr(options.approval_ttl_hours)]
            + ["--unbound-approval-window-seconds", repr(options.unbound_approval_window_seconds)]
            + (token_args + ["--token-audience", ASSET_API_AUDIENCE] if token_args else []),
        )
        hub_args = [
            arg for name, port in options.hubs.items() for arg in ("--hub", f"{name}={port}")
        ]
        # Core Tools cannot take the emulator's notifications: its twin trigger reads a real
        # Event Hub, so they are not sent at all.
        events_args = (
            ["--events-url", f"{function_url}/admin/devstack/eventhubs/{TWIN_EVENTS_HUB}"]
            if options.function_host
            else []
        )
        iothub = self._start(
            "iothub-emulator",
            "devstack.iothub_emulator",
            ["--data-dir", str(self.data_dir / "iothub"), *hub_args]
            + ["--tls-cert", str(self.tls.server_cert), "--tls-key", str(self.tls.server_key)]
            + events_args
            + token_args,
        )
        hubs: dict[str, dict[str, Any]] = iothub.info["hubs"]
        endpoints = StackEndpoints(
            asset_api=assets.url,
            asset_key=self.asset_key,
            hubs=hubs,
            azurite=azurite,
            ca_cert=self.tls.ca_cert,
            twin_events_hub=TWIN_EVENTS_HUB,
        )
        app_settings = (
            keyless_settings(endpoints, identity) if identity else keyed_settings(endpoints)
        )
        self.app_settings = app_settings
        core_tools_settings = None
        if options.function_host:
            host_url = self._start_function_host(function_port, app_settings).url
        else:
            host_url = function_url
            core_tools_settings = write_core_tools_settings(
                self.data_dir / CORE_TOOLS_SETTINGS,
                self.settings | app_settings | self.options.host_env,
                function_port,
            )
        allocate_url = f"{host_url}/api/allocate"
        hubs_file = self.run_dir / "hubs.json"
        hubs_file.write_text(json.dumps(hubs))
        dps_dir = self.data_dir / "dps"
        dps = self._start(
            "dps-emulator",
            "devstack.dps_emulator",
            ["--data-dir", str(dps_dir), "--port", str(options.dps_port)]
            + ["--service-port", str(options.dps_service_port)]
            + ["--tls-cert", str(self.tls.server_cert), "--tls-key", str(self.tls.server_key)]
            + ["--hubs-file", str(hubs_file), "--ca-bundle", str(self.tls.ca_cert)]
            + ["--retry-scale", str(options.dps_retry_scale)],
        )
        # The groups go in as a deployment puts them: through the operator CLI's command.
        groups = apply_groups(
            dps.info,
            groups_dirs=[DEVSTACK_GROUPS],
            local_ca_dir=dps_dir / "ca",
            webhook_url=allocate_url,
            function_key=options.function_key,
            data_dir=dps_dir,
        )
        return {
            "functionHost": host_url,
            "allocateUrl": allocate_url,
            "functionKey": options.function_key,
            "keyless": identity is not None,
            "coreToolsSettings": str(core_tools_settings) if core_tools_settings else None,
            "assetApi": assets.url,
            "assetApiKey": self.asset_key,
            "assetApiAudience": ASSET_API_AUDIENCE if identity else None,
            "hubs": {
                name: {"url": hub["url"], "connectionString": hub["connectionString"]}
                for name, hub in hubs.items()
            },
            "twinEventsHub": TWIN_EVENTS_HUB,
            "assetEventsSubscriber": f"{host_url}{ASSET_EVENTS_PATH}",
            "storage": _storage_description(azurite, app_settings if identity else None),
            "identity": _identity_description(identity),
            "dps": {
                "host": dps.info["host"],
                "port": dps.info["port"],
                "idScope": dps.info["idScope"],
                "serviceHostName": dps.info["serviceHostName"],
                "serviceConnectionString": dps.info["serviceConnectionString"],
            },
            "tls": {"caCert": str(self.tls.ca_cert)},
            "enrollmentGroups": [
                {"id": group.group_id, "record": str(group.record_path)}
                | {"caCert": str(group.ca_cert), "caKey": str(group.ca_key)}
                for group in groups
            ],
            "dataDir": str(self.data_dir),
            "logs": {child.name: str(child.log_path) for child in self.children},
            "pids": {child.name: child.process.pid for child in self.children},
            "startedAt": datetime.now(UTC).isoformat(),
        }

    def _start_identity(self) -> IdentityEndpoint:
        identity = self._start(
            "identity",
            "devstack.identity",
            ["--port", str(self.options.identity_port)]
            + ["--data-dir", str(self.data_dir / "identity")],
        )
        return IdentityEndpoint.from_ready_info(identity.info)

    def _start_function_host(self, port: int, app_settings: dict[str, str]) -> Child:
        host_args = ["--script-root", str(self.options.script_root), "--port", str(port)]
        if self.options.function_key:
            host_args += ["--function-key", self.options.function_key]
        return self._start(
            "function-host",
            "devstack.function_host",
            host_args,
            cwd=self.options.script_root,
            env={
                # local.settings.json first (the process environment still wins), then what
                # only the running stack knows.
                **{name: value for name, value in self.settings.items() if name not in os.environ},
                **app_settings,
                **self.options.host_env,
            },
        )

    def watch(self) -> None:
        while True:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    raise ChildFailed(f"{child.name} exited with code {code}:\n{child.log_tail()}")
            time.sleep(0.2)


def run_stack(options: StackOptions, console: Console | None = None) -> int:
    console = console or Console()
    stack_file = options.data_dir.resolve() / "stack.json"
    running = running_stack(stack_file)
    if running:
        console.print(
            f"[red]a stack is already running from {stack_file}[/red] "
            f"(pids {', '.join(map(str, running))}); stop it with Ctrl-C first"
        )
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack: LocalStack | None = None
    wrote_stack_file = False
    try:
        stack = LocalStack(options, console)
        description = stack.start()
        write_ready_file(stack_file, description)
        wrote_stack_file = True
        print_summary(console, description)
        stack.watch()
    except _Stop:
        console.print("\nstopping the stack...")
        return 0
    except ChildFailed as exc:
        console.print(f"[red]devstack failed:[/red] {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stop_children(list(reversed(stack.children)))
        if wrote_stack_file:
            stack_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        console.print("[dim]all devstack processes stopped[/dim]")
    return 0


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


def _storage_description(
    azurite: AzuriteChild, keyless_settings: dict[str, str] | None
) -> dict[str, Any]:
    """Where storage is; keyless, the app's identity-based settings (the operator CLI uses
    them). The connection string is there either way: the tests inspect queues with it."""
    description: dict[str, Any] = {
        "connectionString": azurite.connection_string,
        "serviceUris": azurite.service_uris,
        "queueUrl": azurite.queue_url,
        "tableUrl": azurite.table_url,
    }
    if keyless_settings is not None:
        description["identitySettings"] = {
            name: value
            for name, value in keyless_settings.items()
            if name.startswith("AzureWebJobsStorage__")
            or name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
        }
    return description


def _identity_description(identity: IdentityEndpoint | None) -> dict[str, str] | None:
    if identity is None:
        return None
    return {
        "endpoint": identity.endpoint,
        "publicKeyFile": str(identity.public_key_file),
        "issuer": identity.issuer,
    }


def free_port() -> int:
    """Resolve port 0 up front for the function host: the IoT Hub emulator needs its URL first."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def print_summary(console: Console, description: dict[str, Any]) -> None:
    keyless = bool(description.get("keyless"))
    title = "devstack is running" + (" keyless" if keyless else "")
    table = Table(title=title, title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("where", overflow="fold")
    table.add_column("logs", overflow="fold")
    logs = {name: _short(Path(path)) for name, path in description["logs"].items()}
    core_tools = description.get("coreToolsSettings")
    if core_tools:
        table.add_row("functions host", "yours: `func start` (Core Tools)", "")
    else:
        table.add_row("dev functions host", description["functionHost"], logs["function-host"])
    table.add_row("  allocation webhook", f"POST {description['allocateUrl']}", "")
    if description.get("identity"):
        table.add_row(
            "identity (managed-identity endpoint)",
            description["identity"]["endpoint"],
            logs.get("identity", ""),
        )
    table.add_row("reference asset service", description["assetApi"], logs["asset-service"])
    storage = description["storage"]
    table.add_row(
        "Azurite (" + ", ".join(storage["serviceUris"]) + ")",
        "  ".join(storage["serviceUris"].values()),
        logs.get("azurite-queue", ""),
    )
    for name, hub in description["hubs"].items():
        table.add_row(f"IoT Hub {name.split('.')[0]}", hub["url"], logs["iothub-emulator"])
    dps = description["dps"]
    table.add_row(
        "DPS (mTLS)",
        f"https://{dps['host']}:{dps['port']}  idScope {dps['idScope']}",
        logs["dps-emulator"],
    )
    table.add_row("  DPS service API", f"https://{dps['serviceHostName']}", "")
    console.print(table)
    if keyless:
        console.print(
            "keyless: the app holds no key; it calls storage (OAuth over HTTPS), the hubs and "
            f"the asset API ({description['assetApiAudience']}) with managed-identity tokens"
        )
    group = description["enrollmentGroups"][0]
    console.print(f"enrollment group {group['id']}: CA {_short(Path(group['caCert']))}")
    console.print(f"trust for every HTTPS endpoint: {_short(Path(description['tls']['caCert']))}")
    console.print(f"stack description: {_short(Path(description['dataDir']) / 'stack.json')}")
    if core_tools:
        console.print(
            f"Core Tools settings: {_short(Path(core_tools))}\n"
            f"  cp {_short(Path(core_tools))} local.settings.json && func start\n"
            "  (twin changes need IOT_HUB_EVENTS_CONNECTION set to a real Event Hub: see "
            "docs/local-stack.md, Run with Core Tools)"
        )
    console.print("try:   .venv/bin/python -m devstack.simulate --devices 50 --via dps")
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
    up.add_argument("--dps-port", type=int, default=9443)
    up.add_argument(
        "--dps-service-port",
        type=int,
        help="DPS's service API (enrollment groups; `python -m operator_cli enrollment`); "
        "default 9444, or a free port when --dps-port is 0",
    )
    up.add_argument("--blob-port", type=int, default=10000, help="Azurite blob service")
    up.add_argument("--queue-port", type=int, default=10001, help="Azurite queue service")
    up.add_argument("--table-port", type=int, default=10002, help="Azurite table service")
    up.add_argument(
        "--hub-port",
        action="append",
        metavar="NAME=PORT",
        help="IoT hub and its port (repeatable; default: the two demo hubs on 8443/8444)",
    )
    up.add_argument("--identity-port", type=int, default=7090, help="identity stand-in (keyless)")
    up.add_argument("--function-key", help="enforce this function key (Core Tools does not)")
    up.add_argument(
        "--keyless",
        action="store_true",
        help="no key in the app's settings: storage over HTTPS with OAuth, IoT Hub and the "
        "asset API with managed-identity tokens from a local identity endpoint",
    )
    up.add_argument(
        "--core-tools",
        action="store_true",
        help="start everything but the functions host, and write the local.settings.json "
        "for Core Tools' `func start` on --function-port",
    )
    up.add_argument(
        "--dps-retry-scale", type=float, default=1.0, help="scale DPS's webhook retry delays"
    )
    up.add_argument(
        "--event-retry-scale",
        type=float,
        default=1.0,
        help="scale the asset service's Event Grid retry delays",
    )
    args = parser.parse_args(argv)
    if args.keyless and args.core_tools:
        parser.error(
            "--keyless runs with the dev functions host only: Core Tools' host would have to "
            "trust the devstack's CA for Azurite over HTTPS, which this machine cannot verify"
        )
    hubs = dict(DEFAULT_HUBS)
    if args.hub_port:
        hubs = {}
        for item in args.hub_port:
            name, _, port = item.partition("=")
            if not name or not port.isdigit():
                parser.error(f"--hub-port takes NAME=PORT, got {item!r}")
            hubs[name] = int(port)
    options = StackOptions(
        data_dir=args.data_dir,
        function_port=args.function_port,
        asset_port=args.asset_port,
        dps_port=args.dps_port,
        dps_service_port=(
            args.dps_service_port
            if args.dps_service_port is not None
            else (0 if args.dps_port == 0 else StackOptions.dps_service_port)
        ),
        blob_port=args.blob_port,
        queue_port=args.queue_port,
        table_port=args.table_port,
        identity_port=args.identity_port,
        keyless=args.keyless,
        function_host=not args.core_tools,
        hubs=hubs,
        function_key=args.function_key,
        dps_retry_scale=args.dps_retry_scale,
        event_retry_scale=args.event_retry_scale,
    )
    return run_stack(options)


if __name__ == "__main__":
    sys.exit(main())
