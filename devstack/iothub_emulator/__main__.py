"""Command line: `python -m devstack.iothub_emulator [--hub NAME=PORT ...] ...`."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.identity.keys import read_public_key
from devstack.serving import PortInUse, bind_socket, serve_sockets
from devstack.tls import ensure_tls

from .app import create_app
from .endpoints import DEFAULT_HUBS, LOOPBACK, parse_hub_arg, ready_info
from .runtime import HubRuntime, Limits, open_hub
from .sas import entra_verifier
from .store import SchemaMismatch

# Requests here take milliseconds (injected latency aside): do not wait 3 s for idle clients.
GRACEFUL_SHUTDOWN_SECONDS = 1


def _hub(text: str) -> tuple[str, int]:
    try:
        return parse_hub_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (off) or more")
    return value


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1-1000")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.iothub_emulator",
        description="IoT Hub service API emulator (HTTPS, one port per hub) for azure-iot-hub.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".devstack/iothub"),
        help="per-hub SQLite databases and keys (default: %(default)s)",
    )
    parser.add_argument(
        "--hub",
        dest="hubs",
        action="append",
        type=_hub,
        metavar="NAME=PORT",
        help="a hub and its port, repeatable; PORT 0 picks a free one "
        f"(default: {' '.join(f'{n}={p}' for n, p in DEFAULT_HUBS)})",
    )
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server key (PEM)")
    parser.add_argument(
        "--events-url",
        help="POST twin change events here; {hub} becomes the hub's short name (default: off)",
    )
    parser.add_argument(
        "--twin-updates-per-second",
        type=_rate,
        default=50.0,
        help="per-hub twin update limit, 0 = off (default: %(default)s, the S1 limit)",
    )
    parser.add_argument(
        "--identity-ops-per-minute",
        type=_rate,
        default=0.0,
        help="per-hub device create/update/delete limit, 0 = off (default: %(default)s)",
    )
    parser.add_argument(
        "--queries-per-minute",
        type=_rate,
        default=0.0,
        help="per-hub query limit (each page counts), 0 = off (default: %(default)s)",
    )
    parser.add_argument(
        "--query-page-size-max",
        type=_page_size,
        default=1000,
        help="most twins a query page holds, whatever the caller asks (default: %(default)s)",
    )
    parser.add_argument(
        "--token-issuer-key",
        type=Path,
        metavar="PEM",
        help="accept `Authorization: Bearer <JWT>` signed with this RSA public key, for "
        "audience https://iothubs.azure.net (devstack.identity's signing-key.pub.pem); "
        "default: SAS only",
    )
    parser.add_argument("--ready-file", type=Path, help="write the ready info here once serving")
    args = parser.parse_args(argv)
    args.hubs = args.hubs or list(DEFAULT_HUBS)
    names = [name for name, _ in args.hubs]
    ports = [port for _, port in args.hubs if port]
    if len(set(names)) != len(names) or len(set(ports)) != len(ports):
        parser.error("each --hub needs its own name and its own port")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("give both --tls-cert and --tls-key, or neither")
    if args.events_url is not None and not args.events_url.startswith(("http://", "https://")):
        parser.error("--events-url must be an http(s) URL")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="iothub-emulator: %(message)s")
    ca_cert = None
    if args.tls_cert is None:
        tls = ensure_tls(args.data_dir.resolve().parent)
        args.tls_cert, args.tls_key, ca_cert = tls.server_cert, tls.server_key, tls.ca_cert
    verifier = None
    if args.token_issuer_key is not None:
        try:
            verifier = entra_verifier(read_public_key(args.token_issuer_key))
        except (OSError, ValueError) as exc:
            sys.exit(
                f"iothub emulator: cannot use --token-issuer-key {args.token_issuer_key}: {exc}"
            )
    runtimes: list[HubRuntime] = []
    try:
        sockets = [bind_socket(LOOPBACK, port) for _, port in args.hubs]
        limits = Limits(
            twin_updates_per_second=args.twin_updates_per_second,
            identity_ops_per_minute=args.identity_ops_per_minute,
            queries_per_minute=args.queries_per_minute,
            query_page_size_max=args.query_page_size_max,
        )
        for (name, _), sock in zip(args.hubs, sockets, strict=True):
            runtimes.append(
                open_hub(
                    args.data_dir,
                    name,
                    sock.getsockname()[1],
                    limits=limits,
                    token_verifier=verifier,
                    events_url=args.events_url,
                )
            )
        serve_sockets(
            create_app(runtimes),
            sockets,
            ready_file=args.ready_file,
            extra_ready_info=ready_info([r.endpoint for r in runtimes], ca_cert),
            ssl_certfile=str(args.tls_cert),
            ssl_keyfile=str(args.tls_key),
            graceful_shutdown_seconds=GRACEFUL_SHUTDOWN_SECONDS,
        )
    except PortInUse as exc:
        sys.exit(f"iothub emulator: {exc}")
    except (OSError, sqlite3.Error, SchemaMismatch) as exc:
        sys.exit(f"iothub emulator: cannot use data dir {args.data_dir}: {exc}")


if __name__ == "__main__":
    main()
