"""Command line: `python -m devstack.asset_service --port 7080 --data-dir DIR ...`."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from devstack.identity.keys import read_public_key
from devstack.identity.tokens import TokenVerifier
from devstack.serving import PortInUse, serve

from .app import create_app
from .auth import API_KEY_ENV, DEFAULT_API_KEY, DEFAULT_TOKEN_AUDIENCE
from .change_events import DEFAULT_TOPIC, EventSchema
from .faults import MAX_LATENCY_MS, FaultSettings
from .problems import Problem
from .publisher import check_endpoint
from .replacement_rules import MAX_APPROVAL_DURATION, ApprovalPolicy
from .store import DATABASE_FILE, SchemaMismatch


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{raw!r} must be a positive number")
    return value


def _duration(unit: str, *, allow_zero: bool) -> Callable[[str], timedelta]:
    def parse(raw: str) -> timedelta:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
        limit = MAX_APPROVAL_DURATION / timedelta(**{unit: 1})
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number from 0 to {limit:.0f}")
        span = timedelta(**{unit: value})
        if not allow_zero and span <= timedelta(0):
            raise argparse.ArgumentTypeError(f"{raw!r} must be above 0 (one microsecond at least)")
        return span

    return parse


def _endpoint(raw: str) -> str:
    try:
        return check_endpoint(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _latency_ms(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_LATENCY_MS):
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer from 0 to {MAX_LATENCY_MS}")
    return int(raw)


def _rate(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number from 0 to 1")
    return value


def _seed(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer") from None


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group(
        "fault injection",
        "start with asset calls slowed or failing (POST /devstack/faults changes it later)",
    )
    faults.add_argument(
        "--fault-latency-ms",
        type=_latency_ms,
        default=0,
        metavar="MS",
        help=f"delay every asset call, 0 to {MAX_LATENCY_MS} (default: %(default)s)",
    )
    faults.add_argument(
        "--fault-error-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="answer this share of asset calls 503, 0 to 1 (default: %(default)s)",
    )
    faults.add_argument("--fault-down", action="store_true", help="answer every asset call 503")
    faults.add_argument(
        "--fault-seed",
        type=_seed,
        metavar="N",
        help="seed for which calls fail, restarted whenever the faults are set (default: random)",
    )


def _add_event_arguments(parser: argparse.ArgumentParser) -> None:
    events = parser.add_argument_group(
        "change events", "publish AssetManagement.* events to Event Grid subscribers"
    )
    events.add_argument(
        "--event-grid-url",
        action="append",
        dest="event_grid_urls",
        default=[],
        type=_endpoint,
        metavar="URL",
        help="subscriber webhook to POST events to, repeatable (default: none)",
    )
    events.add_argument(
        "--event-grid-key", metavar="KEY", help="sent as the aeg-sas-key header when given"
    )
    events.add_argument(
        "--event-schema",
        type=EventSchema,
        choices=list(EventSchema),
        default=EventSchema.EVENT_GRID,
        help="eventgrid, or cloudevents (CloudEvents 1.0 with the write's W3C trace context in"
        " traceparent/tracestate, as a topic with the CloudEvents input schema delivers them)"
        " (default: %(default)s)",
    )
    events.add_argument(
        "--event-topic",
        default=DEFAULT_TOPIC,
        metavar="TOPIC",
        help="the events' topic (default: %(default)s)",
    )
    events.add_argument(
        "--event-retry-scale",
        type=_positive,
        default=1.0,
        metavar="FACTOR",
        help="multiplies every retry delay and the 24 h time to live (default: %(default)s)",
    )
    events.add_argument(
        "--event-delivery-timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for a subscriber's answer (default: %(default)s)",
    )


def _add_approval_arguments(parser: argparse.ArgumentParser) -> None:
    approvals = parser.add_argument_group(
        "replacement approvals", "when an approved replacement device may take an asset over"
    )
    approvals.add_argument(
        "--approval-ttl-hours",
        type=_duration("hours", allow_zero=False),
        default=timedelta(hours=72),
        metavar="HOURS",
        help="an approval is refused this long after approvedAt; fractions allowed (default: 72)",
    )
    approvals.add_argument(
        "--unbound-approval-window-seconds",
        type=_duration("seconds", allow_zero=True),
        default=timedelta(0),
        metavar="SECONDS",
        help="an approval naming neither serial nor thumbprint is accepted only this long "
        "after approvedAt (default: 0, never)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.asset_service",
        description="Reference asset-management service (asset API v1) backed by SQLite.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=7080, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".devstack/assets"),
        help=f"directory holding {DATABASE_FILE} (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        action="extend",
        nargs="+",
        dest="api_keys",
        metavar="KEY",
        help=f"read-write key, repeatable (default: ${API_KEY_ENV}, else {DEFAULT_API_KEY!r})",
    )
    parser.add_argument(
        "--read-only-key",
        action="extend",
        nargs="+",
        dest="read_only_keys",
        default=[],
        metavar="KEY",
        help="key that may only read, repeatable",
    )
    parser.add_argument(
        "--token-issuer-key",
        type=Path,
        metavar="PEM",
        help="also accept Entra ID bearer tokens (JWTs) signed with this RSA public key "
        "(devstack.identity's signing-key.pub.pem), with read-write access (default: keys only)",
    )
    parser.add_argument(
        "--token-audience",
        default=DEFAULT_TOKEN_AUDIENCE,
        metavar="AUD",
        help="the aud a token must carry (default: %(default)s)",
    )
    parser.add_argument("--no-seed", action="store_true", help="do not seed the demo fleet")
    parser.add_argument(
        "--request-log",
        action="store_true",
        help="print one line per request with its traceparent on stderr (follow a caller's trace)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="write {url, port, pid} (and tokenAudience with --token-issuer-key) here once serving",
    )
    _add_event_arguments(parser)
    _add_fault_arguments(parser)
    _add_approval_arguments(parser)
    args = parser.parse_args(argv)
    if args.api_keys is None:
        args.api_keys = [os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY]
    if any(not key for key in (*args.api_keys, *args.read_only_keys)):
        parser.error("API keys must not be empty")
    repeated = {url for url in args.event_grid_urls if args.event_grid_urls.count(url) > 1}
    if repeated:
        parser.error(f"--event-grid-url {sorted(repeated)[0]} is given more than once")
    if args.event_grid_key == "":
        parser.error("--event-grid-key must not be empty")
    if not args.token_audience.strip():
        parser.error("--token-audience must not be empty")
    return args


def _token_verifier(args: argparse.Namespace) -> TokenVerifier | None:
    if args.token_issuer_key is None:
        return None
    try:
        key = read_public_key(args.token_issuer_key)
    except (OSError, ValueError) as exc:
        sys.exit(f"asset service: cannot use --token-issuer-key {args.token_issuer_key}: {exc}")
    return TokenVerifier(key, audiences=[args.token_audience])


def _stderr_line(line: str) -> None:
    print(f"asset service: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    token_verifier = _token_verifier(args)
    try:
        app = create_app(
            args.data_dir,
            api_keys=args.api_keys,
            read_only_keys=args.read_only_keys,
            seed=not args.no_seed,
            event_grid_urls=args.event_grid_urls,
            event_grid_key=args.event_grid_key,
            event_topic=args.event_topic,
            event_schema=args.event_schema,
            event_retry_scale=args.event_retry_scale,
            event_delivery_timeout=args.event_delivery_timeout,
            faults=FaultSettings(
                down=args.fault_down,
                latency_ms=args.fault_latency_ms,
                error_rate=args.fault_error_rate,
            ),
            fault_seed=args.fault_seed,
            approvals=ApprovalPolicy(
                ttl=args.approval_ttl_hours,
                unbound_window=args.unbound_approval_window_seconds,
            ),
            token_verifier=token_verifier,
            request_log=_stderr_line if args.request_log else None,
        )
        serve(
            app,
            host=args.host,
            port=args.port,
            ready_file=args.ready_file,
            extra_ready_info={"tokenAudience": args.token_audience} if token_verifier else None,
        )
    except PortInUse as exc:
        sys.exit(f"asset service: {exc}")
    except (OSError, sqlite3.Error, SchemaMismatch) as exc:
        sys.exit(f"asset service: cannot use data dir {args.data_dir}: {exc}")
    except Problem as exc:
        sys.exit(f"asset service: invalid seed data: {exc.detail}")


if __name__ == "__main__":
    main()
