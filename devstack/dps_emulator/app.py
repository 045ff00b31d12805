"""The DPS device registration API (as Microsoft's device SDKs call it) on aiohttp.web.

Every answer is JSON (`application/json; charset=utf-8`), errors included: Microsoft's Node
client parses bodies only when the content type says JSON and crashes on anything else.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from devstack.dps_emulator.enrollment_groups import EnrollmentGroup
from devstack.dps_emulator.errors import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    NOT_FOUND,
    OPERATION_NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UNAUTHORIZED,
    RequestRejected,
)
from devstack.dps_emulator.group_catalog import GroupCatalog
from devstack.dps_emulator.registration import DeviceRequest, RegistrationService

logger = logging.getLogger("devstack.dps_emulator")

MAX_BODY_BYTES = 96 * 1024
_REGISTRATION_ID = re.compile(r"^[A-Za-z0-9\-._:]{1,128}$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


@dataclass(frozen=True)
class ApiSettings:
    id_scope: str
    poll_seconds: float


def create_app(
    *, service: RegistrationService, catalog: GroupCatalog, settings: ApiSettings
) -> web.Application:
    api = _DeviceApi(service, catalog, settings)
    app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY_BYTES)
    app.router.add_put("/{idScope}/registrations/{registrationId}/register", api.register)
    app.router.add_get(
        "/{idScope}/registrations/{registrationId}/operations/{operationId}", api.operation
    )
    app.router.add_post("/{idScope}/registrations/{registrationId}", api.registration_status)
    return app


class _DeviceApi:
    def __init__(
        self, service: RegistrationService, catalog: GroupCatalog, settings: ApiSettings
    ) -> None:
        self._service = service
        self._catalog = catalog
        self._settings = settings

    async def register(self, request: web.Request) -> web.Response:
        """PUT .../register: start an operation, answer 202 assigning with Retry-After."""
        registration_id = self._common_checks(request)
        leaf, group, signer = self._authenticate(request, registration_id)
        body = await _json_body(request)
        claimed = body.get("registrationId", registration_id)
        if not isinstance(claimed, str) or claimed.casefold() != registration_id.casefold():
            raise RequestRejected(
                400, BAD_REQUEST, "registrationId in the body does not match the one in the path"
            )
        payload = body.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise RequestRejected(400, BAD_REQUEST, "payload must be a JSON object")
        operation = self._service.start(
            DeviceRequest(registration_id, group, leaf, signer, payload)
        )
        return self._json(
            202,
            {"operationId": operation.operation_id, "status": "assigning"},
            retry_after=True,
        )

    async def operation(self, request: web.Request) -> web.Response:
        """GET .../operations/{id}: 202 while assigning, then 200 with the registration state."""
        registration_id = self._common_checks(request)
        self._authenticate(request, registration_id)
        operation = self._service.operation(request.match_info["operationId"])
        if operation is None or operation.registration_id.casefold() != registration_id.casefold():
            raise RequestRejected(404, OPERATION_NOT_FOUND, "no such operation for this device")
        if operation.status == "assigning":
            return self._json(202, operation.body(), retry_after=True)
        return self._json(200, operation.body())

    async def registration_status(self, request: web.Request) -> web.Response:
        """POST /{idScope}/registrations/{id}: the device's last registration state."""
        registration_id = self._common_checks(request)
        self._authenticate(request, registration_id)
        if request.can_read_body:
            await _json_body(request)
        state = self._service.registration_state(registration_id)
        if state is None:
            raise RequestRejected(404, NOT_FOUND, f"no registration for {registration_id}")
        return self._json(200, state)

    def _common_checks(self, request: web.Request) -> str:
        if request.match_info["idScope"].casefold() != self._settings.id_scope.casefold():
            raise RequestRejected(404, NOT_FOUND, "unknown ID scope")
        api_version = request.query.get("api-version")
        if api_version is None:
            raise RequestRejected(400, BAD_REQUEST, "the api-version query parameter is required")
        if not _API_VERSION.fullmatch(api_version):
            raise RequestRejected(400, BAD_REQUEST, f"api-version {api_version!r} is not valid")
        registration_id = request.match_info["registrationId"]
        if not _REGISTRATION_ID.fullmatch(registration_id):
            raise RequestRejected(
                400,
                BAD_REQUEST,
                "registrationId must be 1-128 alphanumerics or - . _ :",
            )
        return registration_id

    def _authenticate(
        self, request: web.Request, registration_id: str
    ) -> tuple[x509.Certificate, EnrollmentGroup, x509.Certificate]:
        """The TLS layer verified the chain; here: which group, CN == registrationId, enabled."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            raise RequestRejected(401, UNAUTHORIZED, "a client certificate is required")
        leaf = x509.load_der_x509_certificate(der)
        found = self._catalog.find(leaf)
        if found is None:
            raise RequestRejected(
                401, UNAUTHORIZED, "Invalid certificate: no enrollment group signed it"
            )
        group, signer = found
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if len(names) == 1 else None
        if common_name is None or common_name.casefold() != registration_id.casefold():
            raise RequestRejected(
                401,
                UNAUTHORIZED,
                f"Invalid certificate: subject CN {common_name!r} is not the registration id",
            )
        if not group.enabled:
            raise RequestRejected(
                401, UNAUTHORIZED, f"enrollment group {group.group_id} is disabled"
            )
        return leaf, group, signer

    def _json(self, status: int, body: Any, *, retry_after: bool = False) -> web.Response:
        response = json_response(status, body)
        if retry_after:
            seconds = self._settings.poll_seconds
            response.headers["Retry-After"] = (
                str(int(seconds)) if float(seconds).is_integer() else str(seconds)
            )
        return response


def json_response(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        charset="utf-8",
        headers={"x-ms-request-id": str(uuid.uuid4())},
    )


def error_response(status: int, error_code: int, message: str) -> web.Response:
    """DPS's error body: errorCode, trackingId, message, timestampUtc."""
    return json_response(
        status,
        {
            "errorCode": error_code,
            "trackingId": str(uuid.uuid4()),
            "message": message,
            "timestampUtc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestRejected(400, BAD_REQUEST, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestRejected(400, BAD_REQUEST, "the body must be a JSON object")
    return body


_ERROR_CODES = {404: NOT_FOUND, 413: PAYLOAD_TOO_LARGE}


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestRejected as exc:
        return error_response(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _ERROR_CODES.get(exc.status, exc.status * 1000)
        return error_response(exc.status, code, exc.reason)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, INTERNAL_ERROR, "internal error")
