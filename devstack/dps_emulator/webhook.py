"""Call a custom allocation webhook and read its answer with DPS's status rules
(docs/contracts.md, "Status codes and retries").

200 with a hub -> allocated; 200 without one -> 400208; 401 -> 400209; >= 429, connection
errors and timeouts -> retried (10 tries: 1 s, then +9 s each, times the retry scale); any
other status -> 400207, with the webhook's problem detail in the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from devstack.dps_emulator.enrollment_groups import masked_url
from devstack.dps_emulator.errors import (
    CUSTOM_ALLOCATION_FAILED,
    CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED,
    CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS,
    RegistrationFailed,
)

logger = logging.getLogger("devstack.dps_emulator.webhook")

TRIES = 10
_DETAIL_CHARS = 500


def retry_delays(scale: float = 1.0, tries: int = TRIES) -> list[float]:
    """Seconds to wait before each retry: 1, 10, 19, ... (DPS: first after 1 s, then +9 s)."""
    return [(1 + 9 * index) * scale for index in range(tries - 1)]


@dataclass(frozen=True)
class WebhookAnswer:
    iot_hub_host_name: str
    initial_twin: dict[str, Any] | None
    payload: Any


class _Retryable(Exception):
    """This attempt may be retried (>= 429, connection error, timeout)."""


class WebhookCaller:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        retry_scale: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._delays = retry_delays(retry_scale)
        self._sleep = sleep

    async def allocate(self, url: str, body: dict[str, Any]) -> WebhookAnswer:
        """POST the allocation request; raise RegistrationFailed with DPS's error code."""
        raw = json.dumps(body).encode()
        last = ""
        for attempt, delay in enumerate([0.0, *self._delays], start=1):
            if delay:
                await self._sleep(delay)
            try:
                return await self._attempt(url, raw)
            except _Retryable as exc:
                last = str(exc)
                logger.warning(
                    "webhook %s, try %d of %d: %s", masked_url(url), attempt, TRIES, last
                )
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_FAILED,
            f"CustomAllocationFailed: the webhook did not answer after {TRIES} tries; last: {last}",
        )

    async def _attempt(self, url: str, raw: bytes) -> WebhookAnswer:
        try:
            async with self._session.post(
                url,
                data=raw,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self._timeout,
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except TimeoutError as exc:
            raise _Retryable(f"no answer within {self._timeout.total} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 429:
            raise _Retryable(f"answered {status}: {_detail(text)}")
        if status == 401:
            raise RegistrationFailed(
                CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS,
                f"CustomAllocationUnauthorizedAccess: the webhook answered 401: {_detail(text)}",
            )
        if status != 200:
            raise RegistrationFailed(
                CUSTOM_ALLOCATION_FAILED,
                f"CustomAllocationFailed: the webhook answered {status}: {_detail(text)}",
            )
        return _answer(text)


def _answer(text: str) -> WebhookAnswer:
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_FAILED,
            "CustomAllocationFailed: the webhook answered 200 with no JSON",
        ) from exc
    if not isinstance(body, dict):
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_FAILED,
            "CustomAllocationFailed: the webhook answered 200 with JSON that is not an object",
        )
    hub = body.get("iotHubHostName")
    if not isinstance(hub, str) or not hub.strip():
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED,
            "CustomAllocationIotHubNotSpecified: the webhook answered 200 without iotHubHostName",
        )
    twin = body.get("initialTwin")
    if twin is not None and not isinstance(twin, dict):
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_FAILED, "CustomAllocationFailed: initialTwin must be an object"
        )
    return WebhookAnswer(iot_hub_host_name=hub, initial_twin=twin, payload=body.get("payload"))


def _detail(text: str) -> str:
    """The problem detail of an RFC 9457 answer, else the start of the body."""
    try:
        problem = json.loads(text)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        parts = [str(problem[key]) for key in ("title", "detail") if problem.get(key)]
        if parts:
            return ": ".join(parts)
    compact = " ".join(text.split())
    return compact[:_DETAIL_CHARS] or "(empty body)"
