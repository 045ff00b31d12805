"""Register a device with DPS (or the DPS emulator) over HTTPS with its X.509 certificate.

The same calls Microsoft's device SDKs make: PUT .../register, then GET .../operations/{id}
every Retry-After seconds until the operation is assigned or failed.
`python -m devstack.dps_device_client --registration-id ID --cert F --key F` prints the
registration state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

API_VERSION = "2019-03-31"
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_STACK_FILE = Path(".devstack/stack.json")


@dataclass(frozen=True)
class RegistrationResult:
    """The final operation status: status "assigned" or "failed" and the registration state."""

    status: str
    operation_id: str
    registration_state: dict[str, Any]

    @property
    def assigned_hub(self) -> str | None:
        hub = self.registration_state.get("assignedHub")
        return hub if isinstance(hub, str) else None

    @property
    def device_id(self) -> str | None:
        device_id = self.registration_state.get("deviceId")
        return device_id if isinstance(device_id, str) else None


class DpsError(Exception):
    """DPS refused a request (status and its error body), or could not be reached (status None)."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def error_code(self) -> int | None:
        code = self.body.get("errorCode") if isinstance(self.body, dict) else None
        return code if isinstance(code, int) else None


def device_ssl_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """One context per device: its own client certificate, the DPS server's CA."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


async def register_device(
    *,
    host: str,
    port: int,
    id_scope: str,
    registration_id: str,
    cert_file: Path,
    key_file: Path,
    ca_file: Path,
    payload: dict[str, Any] | None = None,
    timeout: float = 60,  # noqa: ASYNC109 - one budget for PUT and all polls
    session: aiohttp.ClientSession | None = None,
) -> RegistrationResult:
    """Register and wait for the outcome; raise DpsError on a refused request."""
    context = device_ssl_context(cert_file, key_file, ca_file)
    netloc = f"[{host}]" if ":" in host else host
    base = f"https://{netloc}:{port}/{quote(id_scope)}/registrations/{quote(registration_id)}"
    own_session = session is None
    client = session or aiohttp.ClientSession()
    try:
        async with asyncio.timeout(timeout):
            return await _register(client, context, base, registration_id, payload)
    finally:
        if own_session:
            await client.close()


async def _register(
    session: aiohttp.ClientSession,
    context: ssl.SSLContext,
    base: str,
    registration_id: str,
    payload: dict[str, Any] | None,
) -> RegistrationResult:
    body: dict[str, Any] = {"registrationId": registration_id}
    if payload is not None:
        body["payload"] = payload
    query = {"api-version": API_VERSION}
    while True:
        status, answer, wait = await _call(session, "PUT", f"{base}/register", context, query, body)
        if status < 429:
            break
        await asyncio.sleep(wait)
    while True:
        if answer.get("status") in ("assigned", "failed"):
            return RegistrationResult(
                status=str(answer["status"]),
                operation_id=str(answer.get("operationId", "")),
                registration_state=dict(answer.get("registrationState") or {}),
            )
        operation_id = answer.get("operationId")
        if not isinstance(operation_id, str):
            raise DpsError(f"DPS answered without an operationId: {answer}", body=answer)
        await asyncio.sleep(wait)
        status, polled, wait = await _call(
            session, "GET", f"{base}/operations/{quote(operation_id)}", context, query, None
        )
        answer = polled if status < 429 else {"operationId": operation_id}


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    context: ssl.SSLContext,
    query: dict[str, str],
    body: dict[str, Any] | None,
) -> tuple[int, dict[str, Any], float]:
    """One request: (status, JSON body, seconds to wait); DpsError for 4xx and network errors."""
    headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8"}
    try:
        async with session.request(
            method, url, params=query, json=body, headers=headers, ssl=context
        ) as response:
            text = await response.text()
            retry_after = response.headers.get("Retry-After")
            status = response.status
    except aiohttp.ClientError as exc:
        raise DpsError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = text
    if 300 <= status < 429:
        message = parsed.get("message") if isinstance(parsed, dict) else parsed
        raise DpsError(f"{method} {url}: {status}: {message}", status=status, body=parsed)
    if not isinstance(parsed, dict):
        raise DpsError(f"{method} {url}: {status} with a body that is not a JSON object")
    return status, parsed, _seconds(retry_after)


def _seconds(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after)) if retry_after else DEFAULT_POLL_SECONDS
    except ValueError:
        return DEFAULT_POLL_SECONDS


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dps_device_client",
        description="Register one device with the DPS emulator and print its registration state.",
    )
    parser.add_argument("--registration-id", required=True)
    parser.add_argument("--cert", type=Path, required=True, help="device certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="device private key (PEM)")
    parser.add_argument(
        "--stack",
        type=Path,
        default=DEFAULT_STACK_FILE,
        help="stack.json (its dps section) or the DPS emulator's ready file",
    )
    parser.add_argument("--host", help="overrides the stack file")
    parser.add_argument("--port", type=int, help="overrides the stack file")
    parser.add_argument("--id-scope", help="overrides the stack file")
    parser.add_argument("--ca", type=Path, help="CA of the DPS server certificate")
    parser.add_argument("--payload", type=json.loads, help="custom allocation payload (JSON)")
    parser.add_argument("--timeout", type=float, default=60)
    return parser.parse_args(argv)


def _endpoint(args: argparse.Namespace) -> tuple[str, int, str, Path]:
    stack: dict[str, Any] = {}
    if args.host is None or args.port is None or args.id_scope is None or args.ca is None:
        try:
            stack = json.loads(args.stack.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cannot read {args.stack} ({exc}); pass --host/--port/...") from exc
    dps = stack.get("dps", stack)
    tls = stack.get("tls") or {}
    host = args.host or dps.get("host", "127.0.0.1")
    port = args.port or dps.get("port")
    id_scope = args.id_scope or dps.get("idScope")
    ca = args.ca or dps.get("tlsCaCert") or tls.get("caCert")
    if not port or not id_scope or not ca:
        raise SystemExit(f"{args.stack} names no DPS port, idScope or CA; pass them as options")
    return str(host), int(port), str(id_scope), Path(ca)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    host, port, id_scope, ca = _endpoint(args)
    try:
        result = asyncio.run(
            register_device(
                host=host,
                port=port,
                id_scope=id_scope,
                registration_id=args.registration_id,
                cert_file=args.cert,
                key_file=args.key,
                ca_file=ca,
                payload=args.payload,
                timeout=args.timeout,
            )
        )
    except (DpsError, TimeoutError, OSError, ssl.SSLError) as exc:
        print(f"registration failed: {exc or type(exc).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(result.registration_state, indent=2))
    return 0 if result.status == "assigned" else 1


if __name__ == "__main__":
    sys.exit(main())
