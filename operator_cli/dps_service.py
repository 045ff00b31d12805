"""DPS's service API over HTTPS (aiohttp): enrollment groups and registration records.

api-version 2021-10-01. Every failure becomes a DpsServiceError whose message says what went
wrong in an operator's words; no message carries a header, a token or a request body.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from operator_cli.dps_auth import ServiceAuth
from operator_cli.errors import OperatorError

API_VERSION = "2021-10-01"
TIMEOUT_SECONDS = 30
PAGE_SIZE = 100


class DpsServiceError(OperatorError):
    """DPS refused a call or could not be reached; `status` is the HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DpsService:
    def __init__(self, host_name: str, auth: ServiceAuth, *, ca_bundle: str | None = None) -> None:
        self.base_url = f"https://{host_name}"
        self.auth = auth
        self._ssl = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
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
        await self.auth.close()

    async def get_group(self, group_id: str) -> dict[str, Any] | None:
        status, body, _ = await self._call("GET", f"/enrollmentGroups/{_segment(group_id)}")
        if status == 404:
            return None
        self._raise_for(status, body, f"reading enrollment group {group_id}")
        return _object(body, f"enrollment group {group_id}")

    async def put_group(self, record: dict[str, Any], etag: str | None) -> dict[str, Any]:
        group_id = record["enrollmentGroupId"]
        headers = {"If-Match": etag} if etag else {}
        status, body, _ = await self._call(
            "PUT", f"/enrollmentGroups/{_segment(group_id)}", body=record, headers=headers
        )
        if status == 412:
            raise DpsServiceError(
                f"enrollment group {group_id} changed in DPS after it was read (etag mismatch, "
                "HTTP 412): someone else wrote it first; run `enrollment plan` again",
                status=412,
            )
        self._raise_for(status, body, f"writing enrollment group {group_id}")
        return _object(body, f"enrollment group {group_id}")

    async def groups(self) -> AsyncIterator[dict[str, Any]]:
        """Every group DPS holds, page by page (POST /enrollmentGroups/query)."""
        continuation: str | None = None
        while True:
            headers = {"x-ms-max-item-count": str(PAGE_SIZE)}
            if continuation:
                headers["x-ms-continuation"] = continuation
            status, body, answer = await self._call(
                "POST",
                "/enrollmentGroups/query",
                body={"query": "SELECT * FROM enrollmentGroups"},
                headers=headers,
            )
            self._raise_for(status, body, "listing enrollment groups")
            if not isinstance(body, list):
                raise DpsServiceError("DPS answered the group query with something not a list")
            for item in body:
                if isinstance(item, dict):
                    yield item
            continuation = answer.get("x-ms-continuation")
            if not continuation:
                return

    async def get_registration(self, registration_id: str) -> dict[str, Any] | None:
        path = f"/registrations/{_segment(registration_id)}"
        status, body, _ = await self._call("GET", path)
        if status == 404:
            return None
        self._raise_for(status, body, f"reading registration {registration_id}")
        return _object(body, f"registration {registration_id}")

    async def delete_registration(self, registration_id: str) -> bool:
        """False when DPS has no such record."""
        path = f"/registrations/{_segment(registration_id)}"
        status, body, _ = await self._call("DELETE", path)
        if status == 404:
            return False
        self._raise_for(status, body, f"deleting registration {registration_id}")
        return True

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        assert self._session is not None, "use `async with`"
        all_headers = {
            "Authorization": await self.auth.header(),
            "Accept": "application/json",
            **(headers or {}),
        }
        data = None
        if body is not None:
            data = json.dumps(body)
            all_headers["Content-Type"] = "application/json"
        url = f"{self.base_url}{path}?api-version={API_VERSION}"
        try:
            async with self._session.request(
                method, url, data=data, headers=all_headers
            ) as response:
                raw = await response.read()
                answer_headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, _json(raw), answer_headers
        except aiohttp.ClientSSLError as exc:
            raise DpsServiceError(
                f"TLS with DPS at {self.base_url} failed ({type(exc).__name__}); for the local "
                "stack set DPS_CA_BUNDLE to its CA"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DpsServiceError(
                f"cannot reach DPS at {self.base_url}: {type(exc).__name__}"
            ) from None

    def _raise_for(self, status: int, body: Any, doing: str) -> None:
        if 200 <= status < 300:
            return
        said = _message(body)
        if status == 401:
            problem = (
                f"DPS refused the credentials ({self.auth.description}): check the "
                "connection string's policy and key, or the identity's DPS data role"
            )
        elif status == 403:
            problem = f"{self.auth.description} may not do this (a DPS data role is missing)"
        elif status == 404:
            problem = "not found"
        elif status == 429:
            problem = "DPS throttled the call; try again later"
        else:
            problem = "DPS refused the call"
        raise DpsServiceError(f"{doing}: {problem} (HTTP {status}{said})", status=status)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise DpsServiceError(f"DPS answered with something that is not {what}")
    return body


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    code = body.get("errorCode")
    message = body.get("message")
    text = f"{code}: {message}" if code is not None else str(message or "")
    return f"; DPS says {text[:300]!r}" if text else ""
