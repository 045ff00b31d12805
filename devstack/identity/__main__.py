"""Command line: `python -m devstack.identity --port 7090 --data-dir DIR [--ready-file F]`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from devstack.serving import PortInUse, bind_socket, serve_sockets

from .app import create_app
from .endpoint import ready_info
from .keys import PUBLIC_KEY_FILE, SIGNING_KEY_FILE, ensure_identity_files, read_identity_header
from .tokens import TokenIssuer, load_private_key

GRACEFUL_SHUTDOWN_SECONDS = 1


def _lifetime(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be 1 to 86400 seconds")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.identity",
        description="Entra ID stand-in: App Service's managed-identity endpoint, "
        "handing out RS256 tokens that the devstack's emulators verify.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=7090, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".devstack/identity"),
        help=f"holds {SIGNING_KEY_FILE}, {PUBLIC_KEY_FILE} and the identity header, "
        "made on first start (default: %(default)s)",
    )
    parser.add_argument(
        "--token-lifetime-seconds",
        type=_lifetime,
        default=3600,
        metavar="SECONDS",
        help="how long issued tokens are valid (default: %(default)s)",
    )
    parser.add_argument("--ready-file", type=Path, help="write the ready info here once serving")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="identity: %(message)s")
    try:
        files = ensure_identity_files(args.data_dir.resolve())
        issuer = TokenIssuer(load_private_key(files.signing_key.read_bytes()))
        header = read_identity_header(files)
    except (OSError, ValueError) as exc:
        sys.exit(f"identity: cannot use data dir {args.data_dir}: {exc}")
    try:
        sock = bind_socket(args.host, args.port)
    except PortInUse as exc:
        sys.exit(f"identity: {exc}")
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    serve_sockets(
        create_app(
            issuer, identity_header=header, lifetime=timedelta(seconds=args.token_lifetime_seconds)
        ),
        [sock],
        ready_file=args.ready_file,
        extra_ready_info=ready_info(
            url,
            issuer,
            identity_header=header,
            public_key_file=files.public_key,
            lifetime=args.token_lifetime_seconds,
        ),
        graceful_shutdown_seconds=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":
    main()
