"""Command line of the dev functions host: read config like Core Tools, index the app, serve."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from devstack.function_host.app_loader import load_functions
from devstack.function_host.errors import StartupError
from devstack.function_host.host_config import load_host_config
from devstack.function_host.keys import KeyPolicy
from devstack.function_host.logging_setup import configure_logging
from devstack.function_host.server import DEFAULT_MAX_BODY_BYTES, FunctionHost, HostOptions
from devstack.function_host.settings_file import apply_values, load_local_settings
from devstack.serving import PortInUse, serve

logger = logging.getLogger("devstack.function_host")

DEFAULT_PORT = 7071
MAX_BODY_ENV = "DEVSTACK_MAX_BODY_BYTES"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.function_host",
        description="Serve a Python v2 Azure Functions app locally, like `func start`.",
    )
    parser.add_argument(
        "--script-root",
        type=Path,
        default=Path.cwd(),
        help="folder with host.json and the app module (default: cwd)",
    )
    parser.add_argument(
        "--app",
        default="function_app:app",
        help="MODULE:ATTR of the FunctionApp (default: function_app:app)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="default: Host.LocalHttpPort from local.settings.json, else 7071",
    )
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=None,
        help="default: <script-root>/local.settings.json (may be missing)",
    )
    parser.add_argument(
        "--function-key",
        default=None,
        help="enforce keys; function-level triggers accept this or the master key",
    )
    parser.add_argument(
        "--master-key",
        default=None,
        help="enforce keys; admin level, host endpoints and Event Grid need it",
    )
    parser.add_argument("--ready-file", type=Path, default=None)
    return parser.parse_args(argv)


def _max_body_bytes() -> int:
    raw = os.environ.get(MAX_BODY_ENV)
    if raw is None:
        return DEFAULT_MAX_BODY_BYTES
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise StartupError(f"{MAX_BODY_ENV} must be a positive number of bytes, got {raw!r}")
    return int(raw)


def build_host(args: argparse.Namespace) -> FunctionHost:
    """Everything Core Tools does before listening; raises StartupError on any problem."""
    script_root = args.script_root.resolve()
    if not script_root.is_dir():
        raise StartupError(f"script root {script_root} is not a directory")
    settings_path = (args.settings_file or script_root / "local.settings.json").resolve()
    settings = load_local_settings(settings_path)
    apply_values(settings.values, os.environ)
    # After the settings: AzureFunctionsJobHost__* app settings override host.json, as on Azure.
    host_config = load_host_config(script_root, os.environ)
    configure_logging()
    if args.function_key is not None and args.master_key is None:
        logger.warning(
            "no --master-key: admin-level HTTP triggers answer 401; host endpoints stay open"
        )
    ready_file = args.ready_file.resolve() if args.ready_file else None
    # The worker runs with the script root as working directory; apps may rely on it.
    os.chdir(script_root)
    functions = load_functions(script_root, args.app, os.environ)
    port = args.port if args.port is not None else settings.local_http_port or DEFAULT_PORT
    options = HostOptions(
        script_root=script_root,
        route_prefix=host_config.route_prefix,
        keys=KeyPolicy(function_key=args.function_key, master_key=args.master_key),
        max_body_bytes=_max_body_bytes(),
        host=args.host,
        port=port,
        ready_file=ready_file,
        max_event_batch_size=host_config.max_event_batch_size,
        queues=host_config.queues,
    )
    return FunctionHost(functions, options)


def _report(exc: BaseException) -> None:
    if exc.__cause__ is not None:
        traceback.print_exception(exc.__cause__, file=sys.stderr)
    print(f"\nerror: {exc}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        host = build_host(args)
    except StartupError as exc:
        _report(exc)
        return 1
    options = host.options
    try:
        serve(host.asgi_app(), host=options.host, port=options.port, ready_file=options.ready_file)
    except PortInUse as exc:
        _report(exc)
        return 1
    except KeyboardInterrupt:
        # uvicorn re-raises the captured SIGINT after its graceful shutdown.
        return 0
    return 0
