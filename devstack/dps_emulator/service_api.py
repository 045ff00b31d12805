"""DPS's service API for enrollment groups and registration records, on aiohttp.web.

Served on a port of its own with server-only TLS, as DPS serves it on the instance's host
(`{name}.azure-devices-provisioning.net`) apart from the device API's mutual TLS. Groups written
here are the files the device API reads (`<data-dir>/enrollment-groups/*.json`), so a device
registers against the group as soon as the PUT has answered. Every request needs
`api-version` and a shared access signature; errors are DPS's error body with its
`x-ms-error-code` header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from devstack.dps_emulator.app import error_response, json_response
from devstack.dps_emulator.certificate_info import certificate_info
from devstack.dps_emulator.enrollment_groups import (
    EnrollmentGroup,
    new_etag,
    parse_enrollment_group,
    timestamp,
    write_group_record,
)
from devstack.dps_emulator.errors import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    NOT_FOUND,
    PRECONDITION_FAILED,
    UNAUTHORIZED,
    EnrollmentGroupError,
    RequestRejected,
)
from devstack.dps_emulator.group_catalog import GroupCatalog
from devstack.dps_emulator.service_auth import SasPolicies, SasRejected
from devstack.dps_emulator.store import RegistrationStore

logger = logging.getLogger("devstack.dps_emulator.service")

MAX_BODY_BYTES = 96 * 1024
DEFAULT_PAGE = 100
_SERVER_FIELDS = ("etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc")
_ERROR_NAMES = {
    400: "BadRequest",
    401: "IotDpsUnauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    412: "PreconditionFailed",
    413: "RequestEntityTooLarge",
    500: "ServerError",
}


def create_service_app(
    *, catalog: GroupCatalog, store: RegistrationStore, policies: SasPolicies
) -> web.Application:
    api = _ServiceApi(catalog, store)
    app = web.Application(
        middlewares=[_errors, _authorized(policies)], client_max_size=MAX_BODY_BYTES
    )
    app.router.add_post("/enrollmentGroups/query", api.query_groups)
    app.router.add_get("/enrollmentGroups/{id}", api.get_group)
    app.router.add_put("/enrollmentGroups/{id}", api.put_group)
    app.router.add_delete("/enrollmentGroups/{id}", api.delete_group)
    app.router.add_get("/registrations/{id}", api.get_registration)
    app.router.add_delete("/registrations/{id}", api.delete_registration)
    return app


def service_view(record: dict[str, Any], group: EnrollmentGroup) -> dict[str, Any]:
    """A group as the service API returns it: signing certificates as their info only."""
    view: dict[str, Any] = json.loads(json.dumps(record))
    signing = view["attestation"]["x509"]["signingCertificates"]
    for slot, cert in zip(("primary", "secondary"), group.signing_certificates, strict=False):
        signing[slot] = {"info": certificate_info(cert)}
    return view


class _ServiceApi:
    def __init__(self, catalog: GroupCatalog, store: RegistrationStore) -> None:
        self._catalog = catalog
        self._store = store

    async def get_group(self, request: web.Request) -> web.Response:
        group = self._existing(request.match_info["id"])
        return _with_etag(service_view(group.record, group))

    async def put_group(self, request: web.Request) -> web.Response:
        group_id = request.match_info["id"]
        body = await _json_object(request)
        if body.get("enrollmentGroupId") != group_id:
            raise RequestRejected(
                400, BAD_REQUEST, "enrollmentGroupId in the body does not match the one in the path"
            )
        existing = self._find(group_id)
        _check_if_match(request, existing.record.get("etag") if existing else None)
        record = _without_server_fields(body)
        path = existing.path if existing else self._catalog.directory / f"{group_id}.json"
        try:
            group = parse_enrollment_group(path, record)
        except EnrollmentGroupError as exc:
            raise RequestRejected(400, BAD_REQUEST, f"{exc.field}: {exc.problem}") from None
        self._check_signers_unique(group)
        now = timestamp()
        record["etag"] = new_etag()
        record["createdDateTimeUtc"] = (
            existing.record.get("createdDateTimeUtc", now) if existing else now
        )
        record["lastUpdatedDateTimeUtc"] = now
        write_group_record(path, record)
        self._catalog.reload()
        logger.info("enrollment group %s %s", group_id, "updated" if existing else "created")
        return _with_etag(service_view(record, group))

    async def delete_group(self, request: web.Request) -> web.Response:
        group = self._existing(request.match_info["id"])
        _check_if_match(request, group.record.get("etag"))
        group.path.unlink(missing_ok=True)
        self._catalog.reload()
        logger.info("enrollment group %s deleted", group.group_id)
        return web.Response(status=204)

    async def query_groups(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if not isinstance(body.get("query"), str):
            raise RequestRejected(400, BAD_REQUEST, "the body needs a query string")
        size = _header_int(request, "x-ms-max-item-count", DEFAULT_PAGE) or DEFAULT_PAGE
        start = _header_int(request, "x-ms-continuation", 0)
        groups = sorted(self._catalog.groups, key=lambda g: g.group_id.casefold())
        page = groups[start : start + size]
        response = json_response(200, [service_view(g.record, g) for g in page])
        response.headers["x-ms-item-type"] = "enrollmentGroup"
        if start + size < len(groups):
            response.headers["x-ms-continuation"] = str(start + size)
        return response

    async def get_registration(self, request: web.Request) -> web.Response:
        stored = self._store.get(request.match_info["id"])
        if stored is None:
            raise RequestRejected(404, NOT_FOUND, "no registration record with this id")
        return _with_etag(stored.state)

    async def delete_registration(self, request: web.Request) -> web.Response:
        registration_id = request.match_info["id"]
        stored = self._store.get(registration_id)
        if stored is None:
            raise RequestRejected(404, NOT_FOUND, "no registration record with this id")
        _check_if_match(request, stored.state.get("etag"))
        self._store.delete(registration_id)
        logger.info("registration record %s deleted", stored.registration_id)
        return web.Response(status=204)

    def _find(self, group_id: str) -> EnrollmentGroup | None:
        self._catalog.reload()
        key = group_id.casefold()
        return next((g for g in self._catalog.groups if g.group_id.casefold() == key), None)

    def _existing(self, group_id: str) -> EnrollmentGroup:
        group = self._find(group_id)
        if group is None:
            raise RequestRejected(404, NOT_FOUND, f"no enrollment group {group_id!r}")
        return group

    def _check_signers_unique(self, group: EnrollmentGroup) -> None:
        mine = {c.public_bytes(serialization.Encoding.DER) for c in group.signing_certificates}
        for other in self._catalog.groups:
            if other.group_id.casefold() == group.group_id.casefold():
                continue
            theirs = {
                c.public_bytes(serialization.Encoding.DER) for c in other.signing_certificates
            }
            if mine & theirs:
                raise RequestRejected(
                    400,
                    BAD_REQUEST,
                    f"attestation.x509.signingCertificates: the same certificate signs group "
                    f"{other.group_id!r}; a device must belong to exactly one group",
                )


def _check_if_match(request: web.Request, current: Any) -> None:
    wanted = request.headers.get("If-Match")
    if wanted is None or (wanted == "*" and current is not None):
        return
    if current is None or wanted != current:
        raise RequestRejected(
            412, PRECONDITION_FAILED, "Precondition failed: the etag does not match (If-Match)"
        )


def _without_server_fields(body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(json.dumps(body))
    for name in _SERVER_FIELDS:
        record.pop(name, None)
    attestation = record.get("attestation")
    x509_section = attestation.get("x509") if isinstance(attestation, dict) else None
    signing = x509_section.get("signingCertificates") if isinstance(x509_section, dict) else None
    if isinstance(signing, dict):
        for slot in signing.values():
            if isinstance(slot, dict):
                slot.pop("info", None)
    return record


def _with_etag(body: dict[str, Any]) -> web.Response:
    response = json_response(200, body)
    if isinstance(body.get("etag"), str):
        response.headers["ETag"] = body["etag"]
    return response


def _header_int(request: web.Request, name: str, default: int) -> int:
    raw = request.headers.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise RequestRejected(400, BAD_REQUEST, f"{name} must be a non-negative integer")
    return int(raw)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError as exc:
        raise RequestRejected(400, BAD_REQUEST, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestRejected(400, BAD_REQUEST, "the body must be a JSON object")
    return body


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorized(policies: SasPolicies) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not request.query.get("api-version"):
            raise RequestRejected(400, BAD_REQUEST, "the api-version query parameter is required")
        try:
            policies.check(request.headers.get("Authorization"), request.path)
        except SasRejected as exc:
            raise RequestRejected(401, UNAUTHORIZED, f"Unauthorized: {exc}") from None
        return await handler(request)

    return check


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestRejected as exc:
        return _error(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, NOT_FOUND if exc.status == 404 else exc.status * 1000, exc.reason)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return _error(500, INTERNAL_ERROR, "internal error")


def _error(status: int, code: int, message: str) -> web.Response:
    response = error_response(status, code, message)
    response.headers["x-ms-error-code"] = _ERROR_NAMES.get(status, str(code))
    return response
