"""AssetRepository over HTTP with httpx: a pooled AsyncClient per worker, a timeout per call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from asset_client.errors import (
    AssetAccessDenied,
    AssetConflict,
    AssetContractViolation,
    AssetNotFound,
    AssetRequestRejected,
    AssetUnavailable,
    AssetVersionConflict,
)
from asset_client.models import ASSET_ID_PATTERN, Asset, DeviceLink

_ASSET = TypeAdapter(Asset)
_ITEMS = TypeAdapter(list[Asset])
_MAX_DETAIL = 300
T = TypeVar("T")


class HttpAssetRepository:
    """Talks to the asset API; maps every failure to an asset_client error."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_seconds: float,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"accept": "application/json", "user-agent": "dps-asset-onboarding/0.1"}
        if api_key:
            headers["x-api-key"] = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def get_asset(self, asset_id: str) -> Asset:
        response = await self._call("GET", f"/assets/{_segment(asset_id)}")
        return _parse(_ASSET, response)

    async def find_by_device_id(self, device_id: str) -> list[Asset]:
        return await self._find({"deviceId": device_id})

    async def find_by_serial_number(self, serial_number: str) -> list[Asset]:
        return await self._find({"serialNumber": serial_number})

    async def link_device(self, asset_id: str, link: DeviceLink) -> Asset:
        response = await self._call(
            "POST",
            f"/assets/{_segment(asset_id)}/devices",
            body=link.model_dump(by_alias=True, exclude_none=True),
        )
        return _parse(_ASSET, response)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _find(self, params: Mapping[str, str]) -> list[Asset]:
        response = await self._call("GET", "/assets", params=params)
        body = _json(response)
        if not isinstance(body, dict) or "items" not in body:
            raise AssetContractViolation("GET /assets answered without an items array")
        return _validate(_ITEMS, body["items"], "GET /assets")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = await self._client.request(method, path, params=params, json=body)
        except httpx.TimeoutException as exc:
            raise AssetUnavailable(f"asset API timed out on {what}") from exc
        except httpx.TransportError as exc:
            raise AssetUnavailable(
                f"asset API unreachable on {what}: {type(exc).__name__}"
            ) from exc
        status = response.status_code
        if status < 400:
            return response
        detail = f"asset API answered {status} to {what}{_problem_detail(response)}"
        if status == 404:
            raise AssetNotFound(detail)
        if status == 409:
            raise AssetConflict(detail)
        if status == 412:
            raise AssetVersionConflict(detail)
        if status in (401, 403):
            raise AssetAccessDenied(detail)
        if status == 429 or status >= 500:
            raise AssetUnavailable(detail, retry_after=_retry_after(response))
        raise AssetRequestRejected(detail, status)


def _segment(asset_id: str) -> str:
    """Refuse ids outside the contract: servers decode %2F before routing, so quoting is not
    enough to keep `A/history` from addressing another resource."""
    if not ASSET_ID_PATTERN.fullmatch(asset_id):
        raise AssetRequestRejected(f"{asset_id[:140]!r} is not a valid asset id", 400)
    return quote(asset_id, safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        request = response.request
        raise AssetContractViolation(
            f"{request.method} {request.url.path} answered a body that is not JSON"
        ) from exc


def _parse(adapter: TypeAdapter[Asset], response: httpx.Response) -> Asset:
    return _validate(
        adapter, _json(response), f"{response.request.method} {response.request.url.path}"
    )


def _validate(adapter: TypeAdapter[T], value: Any, what: str) -> T:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AssetContractViolation(
            f"{what} answered an invalid asset: {where}: {first['msg']}"
        ) from exc


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return f": {body['detail'][:_MAX_DETAIL]}"
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
