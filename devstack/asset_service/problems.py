"""RFC 9457 problem details: the one error type the service raises, and how it is rendered."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Problem type URNs documented in asset_client/openapi.yaml; "about:blank" covers plain statuses.
VALIDATION = "urn:asset-api:problem:validation"
MALFORMED_BODY = "urn:asset-api:problem:malformed-body"
VERSION_MISMATCH = "urn:asset-api:problem:version-mismatch"
ASSET_EXISTS = "urn:asset-api:problem:asset-exists"
SERIAL_CONFLICT = "urn:asset-api:problem:serial-conflict"
DEVICE_CONFLICT = "urn:asset-api:problem:device-conflict"
ASSET_RETIRED = "urn:asset-api:problem:asset-retired"
REPLACEMENT_CONFLICT = "urn:asset-api:problem:replacement-conflict"
REPLACEMENT_NOT_APPROVED = "urn:asset-api:problem:replacement-not-approved"
REPLACEMENT_APPROVAL_EXPIRED = "urn:asset-api:problem:replacement-approval-expired"
REPLACEMENT_APPROVAL_UNBOUND = "urn:asset-api:problem:replacement-approval-unbound"
REPLACEMENT_HARDWARE_MISMATCH = "urn:asset-api:problem:replacement-hardware-mismatch"


class Problem(Exception):
    """An error answered as problem+json; `extensions` adds members such as `field`."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update((k, v) for k, v in self.extensions.items() if k not in body)
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.to_json(),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_CONTENT_TYPE,
        )


def invalid(field: str, message: str) -> Problem:
    """A 400 naming the offending field, so a client can fix its request without guessing."""
    return Problem(
        400,
        f"{field} {message}",
        type_=VALIDATION,
        title="Invalid request",
        extensions={"field": field},
    )


def not_found(asset_id: str) -> Problem:
    return Problem(404, f"asset {asset_id} does not exist")
