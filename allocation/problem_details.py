"""The one place where failures become HTTP statuses DPS understands
(docs/contracts.md, "Status codes and retries").

DPS fails the registration on 400/401/404/409 (400207/400209) and retries on >= 429, so a
refusal is 4xx only when retrying cannot help; asset-system trouble is 5xx so DPS retries.
The body's detail is the refusal's public text: DPS relays it to the device, so it names the
field or rule and nothing of other devices, assets or the asset system's own words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from allocation.errors import (
    AllocationDeferred,
    AllocationError,
    AssetNotAssignable,
    AssetRecordInvalid,
    BodyTooLarge,
    InvalidRequest,
)
from app_errors import Conflict, DependencyFailed, DependencyUnavailable
from asset_client import AssetError, AssetUnavailable
from resilience.queue_port import QueueError

PROBLEM_JSON = "application/problem+json"
DEFAULT_RETRY_AFTER_SECONDS = 5
_TYPE_PREFIX = "urn:dps-asset-onboarding:problem:"


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mapping:
    status: int
    title: str
    code: str
    public: str = "see the webhook's logs with this request id"


def problem_answer(error: Exception, request_id: str) -> HttpAnswer:
    """Map any failure to problem+json; unexpected ones are 500 without internals."""
    mapping = _mapping_for(error)
    detail = error.public if isinstance(error, AllocationError) else mapping.public
    body: dict[str, Any] = {
        "type": _TYPE_PREFIX + mapping.code,
        "title": mapping.title,
        "status": mapping.status,
        "detail": detail,
        "requestId": request_id,
    }
    if isinstance(error, InvalidRequest) and error.problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in error.problems]
    headers = {"x-request-id": request_id}
    if isinstance(error, AssetUnavailable):
        retry = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        headers["retry-after"] = str(max(1, round(retry)))
    if isinstance(error, AllocationDeferred):
        headers["retry-after"] = str(error.retry_after)
    if isinstance(error, QueueError):
        headers["retry-after"] = str(DEFAULT_RETRY_AFTER_SECONDS)
    return HttpAnswer(mapping.status, json.dumps(body).encode(), PROBLEM_JSON, headers)


def _mapping_for(error: Exception) -> _Mapping:
    """By the error's family (app_errors); a few members of a family answer more precisely."""
    if isinstance(error, QueueError):
        # Our own storage: without it nothing can be recorded, so DPS should come back later.
        return _STORAGE_UNAVAILABLE
    if isinstance(error, AllocationError):
        return _refusal(error)
    if isinstance(error, Conflict):
        # The asset changed under us between lookup and link: DPS must not retry blindly.
        return _Mapping(409, "Asset changed during allocation", "asset-conflict")
    if isinstance(error, DependencyUnavailable):
        return _ASSETS_UNAVAILABLE if isinstance(error, AssetError) else _UNAVAILABLE
    if isinstance(error, DependencyFailed | AssetError):
        return _Mapping(502, "Asset system refused or misbehaved", "asset-system-error")
    return _Mapping(500, "Internal error", "internal-error", "unexpected error; see the logs")


def _refusal(error: AllocationError) -> _Mapping:
    """The webhook's own answers: each carries its code and its public text."""
    if isinstance(error, DependencyUnavailable):  # deferred: the asset system's word is needed
        return _Mapping(503, "Asset system unavailable; retry later", error.code)
    if isinstance(error, BodyTooLarge):
        return _Mapping(413, "Request body too large", error.code)
    if isinstance(error, AssetNotAssignable | AssetRecordInvalid):
        return _Mapping(409, "Asset cannot take this device", error.code)
    return _Mapping(400, "Registration refused", error.code)


_STORAGE_UNAVAILABLE = _Mapping(
    503, "Storage unavailable", "storage-unavailable", "storage is unavailable; retry later"
)
_ASSETS_UNAVAILABLE = _Mapping(
    503,
    "Asset system unavailable",
    "asset-system-unavailable",
    "the asset system is unavailable; retry later",
)
_UNAVAILABLE = _Mapping(
    503, "Service unavailable", "dependency-unavailable", "a dependency is unavailable; retry later"
)
