"""A device's side of DPS: register over HTTPS with mutual TLS and wait for the outcome.

PUT /{idScope}/registrations/{id}/register, then GET .../operations/{operationId} until the
status is no longer "assigning", as Microsoft's device SDKs do.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from operator_cli.errors import OperatorError
from operator_cli.local_ca import DeviceCertificate

DEVICE_API_VERSION = "2021-06-01"
GLOBAL_ENDPOINT = "global.azure-devices-provisioning.net"


class RegistrationError(OperatorError):
    """The device could not register: refused, unreachable or still assigning at the deadline."""


async def register(
    *,
    endpoint: str,
    id_scope: str,
    registration_id: str,
    certificate: DeviceCertificate,
    ca_bundle: str | None,
    timeout: float,  # noqa: ASYNC109 - one budget for the PUT and every poll
) -> dict[str, Any]:
    """The final registration state (status assigned or failed)."""
    with tempfile.TemporaryDirectory(prefix="smoke-device-") as directory:
        context = _client_context(Path(directory), certificate, ca_bundle)
    base = f"https://{endpoint}/{quote(id_scope, safe='')}/registrations/{quote(registration_id)}"
    query = f"api-version={DEVICE_API_VERSION}"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as session:
        try:
            async with asyncio.timeout(timeout):
                status, body, retry = await _call(
                    session, "PUT", f"{base}/register?{query}", {"registrationId": registration_id}
                )
                while status in (200, 202):
                    if body.get("status") not in (None, "assigning", "unassigned"):
                        return _state(body)
                    operation = body.get("operationId")
                    if not isinstance(operation, str):
                        raise RegistrationError("DPS answered the registration without operationId")
                    await asyncio.sleep(retry)
                    status, body, retry = await _call(
                        session, "GET", f"{base}/operations/{quote(operation)}?{query}", None
                    )
        except TimeoutError:
            raise RegistrationError(
                f"the registration was still assigning after {timeout:.0f} s"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise RegistrationError(
                f"TLS with DPS at {endpoint} failed ({type(exc).__name__}): is the smoke group's "
                "CA in DPS (`enrollment apply`)?"
            ) from None
        except aiohttp.ClientError as exc:
            raise RegistrationError(
                f"cannot reach DPS's device endpoint {endpoint}: {type(exc).__name__}"
            ) from None
    message = body.get("message") if isinstance(body, dict) else None
    code = body.get("errorCode") if isinstance(body, dict) else None
    raise RegistrationError(f"DPS refused the registration (HTTP {status}, {code}: {message})")


def _state(body: dict[str, Any]) -> dict[str, Any]:
    state = body.get("registrationState")
    return state if isinstance(state, dict) else {"status": body.get("status")}


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any
) -> tuple[int, dict[str, Any], float]:
    async with session.request(
        method,
        url,
        data=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    ) as response:
        raw = await response.read()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        retry = _retry_after(response.headers.get("Retry-After"))
        return response.status, parsed if isinstance(parsed, dict) else {}, retry


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 2), 0.05), 10.0)
    except ValueError:
        return 2.0


def _client_context(
    directory: Path, certificate: DeviceCertificate, ca_bundle: str | None
) -> ssl.SSLContext:
    """The context loads the key from a file, in a private directory deleted right after."""
    context = ssl.create_default_context(cafile=ca_bundle)
    cert_file, key_file = directory / "device.pem", directory / "device.key.pem"
    cert_file.write_bytes(certificate.cert_pem)
    key_file.touch(mode=0o600)
    key_file.write_bytes(certificate.key_pem)
    context.load_cert_chain(cert_file, key_file)
    return context
