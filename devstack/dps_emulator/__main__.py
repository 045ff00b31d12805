"""`python -m devstack.dps_emulator --data-dir DIR ...`: the DPS device API with mutual TLS."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.dps_emulator.certificate_info import X509Shape
from devstack.dps_emulator.errors import StartupError
from devstack.dps_emulator.server import DEFAULT_ID_SCOPE, DEFAULT_PORT, EmulatorOptions, run
from devstack.serving import PortInUse


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> EmulatorOptions:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dps_emulator",
        description="DPS emulator: device registration over mutual TLS, custom allocation "
        "webhooks, device identities created on IoT hubs with the azure-iot-hub SDK.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="holds enrollment-groups/*.json, the registrations database, tls/",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--service-port",
        type=int,
        default=0,
        help="the service API (enrollment groups, registration records; SAS auth, server-only "
        "TLS); 0 picks a free port (default), the ready file names it",
    )
    parser.add_argument("--id-scope", default=DEFAULT_ID_SCOPE)
    parser.add_argument("--tls-cert", type=Path, help="server certificate (default: devstack's)")
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument(
        "--hubs-file",
        type=Path,
        help='{"<hub host name>": {"connectionString": ...}}; without it no identities are made',
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        help="CA trusted for the hubs' and webhooks' HTTPS (default: the devstack CA)",
    )
    parser.add_argument(
        "--retry-scale",
        type=_positive,
        default=1.0,
        help="multiplies DPS's webhook retry delays (1 s, then +9 s each)",
    )
    parser.add_argument(
        "--webhook-timeout", type=_positive, default=10.0, help="seconds per webhook call"
    )
    parser.add_argument(
        "--x509-shape",
        choices=[shape.value for shape in X509Shape],
        default=X509Shape.CLIENT_CERTIFICATE.value,
        help="what deviceRuntimeContext.x509 carries (default: %(default)s)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=_positive,
        default=1.0,
        help="Retry-After given to polling devices (default: %(default)s)",
    )
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return EmulatorOptions(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        id_scope=args.id_scope,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        hubs_file=args.hubs_file,
        ca_bundle=args.ca_bundle,
        retry_scale=args.retry_scale,
        webhook_timeout=args.webhook_timeout,
        x509_shape=X509Shape(args.x509_shape),
        poll_seconds=args.poll_seconds,
        ready_file=args.ready_file,
        service_port=args.service_port,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        asyncio.run(run(options))
    except StartupError as exc:
        print(f"dps emulator: {exc}", file=sys.stderr)
        return 2
    except PortInUse as exc:
        print(f"dps emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
