"""The smoke test's asset in the asset API: made ready before the device registers, reset after.

The asset API has no delete, so the smoke test keeps one asset of its own (SMOKE_ASSET_ID) and
returns it to its starting state after each run: no device linked, status planned.
"""

from __future__ import annotations

import json
import ssl
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from asset_client.auth import AssetApiAuth
from operator_cli.errors import OperatorError

TIMEOUT_SECONDS = 15


class AssetApiError(OperatorError):
    """The asset API refused a call or could not be reached."""


class SmokeAssets:
    def __init__(self, base_url: str, auth: AssetApiAuth | None, *, ca_bundle: str | None) -> None:
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            connector=aiohttp.TCPConnector(ssl=self._ssl),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._auth is not None:
            await self._auth.aclose()

    async def get(self, asset_id: str) -> tuple[dict[str, Any], str] | None:
        status, body, etag = await self._call("GET", asset_id)
        if status == 404:
            return None
        self._raise_for(status, body, f"reading asset {asset_id}")
        return body, etag

    async def ready(self, asset_id: str, content: dict[str, Any]) -> dict[str, Any]:
        """Create the asset, or put it back to `content` (no device linked)."""
        found = await self.get(asset_id)
        headers = {"If-None-Match": "*"} if found is None else {"If-Match": found[1]}
        status, body, _ = await self._call("PUT", asset_id, body=content, headers=headers)
        self._raise_for(status, body, f"preparing asset {asset_id}")
        return body if isinstance(body, dict) else {}

    async def _call(
        self,
        method: str,
        asset_id: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, str]:
        assert self._session is not None, "use `async with`"
        all_headers = dict(await self._auth.headers()) if self._auth else {}
        all_headers |= headers or {}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        url = f"{self._base}/assets/{quote(asset_id, safe='')}"
        try:
            async with self._session.request(
                method, url, data=None if body is None else json.dumps(body), headers=all_headers
            ) as response:
                raw = await response.read()
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                return response.status, parsed, response.headers.get("ETag", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AssetApiError(
                f"cannot reach the asset API at {self._base}: {type(exc).__name__}"
            ) from None

    def _raise_for(self, status: int, body: Any, doing: str) -> None:
        if 200 <= status < 300:
            return
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
        hint = f"; {self._auth.refusal_hint}" if status in (401, 403) and self._auth else ""
        raise AssetApiError(f"{doing}: the asset API answered HTTP {status} ({detail}){hint}")
