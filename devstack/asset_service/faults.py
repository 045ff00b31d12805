"""Fault injection for demos and chaos tests: make the asset API slow, flaky or down on demand.

`POST /devstack/faults {"down": bool, "latencyMs": int, "errorRate": float}` replaces the whole
setting (omitted fields are off, so `{}` clears it); `GET /devstack/faults` shows it. Faults hit
every call under /assets, before anything else happens (routing, the API key, the work), so an
injected 503 changes nothing; /healthz and /devstack/* are never affected.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import KeyRing
from .problems import Problem, invalid
from .request_body import read_json
from .validation import shorten

logger = logging.getLogger("devstack.asset_service.faults")

MAX_LATENCY_MS = 60_000
FAULT_FIELDS = ("down", "latencyMs", "errorRate")
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class FaultSettings:
    """What to inject into each asset call; the default injects nothing."""

    down: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be from 0 to {MAX_LATENCY_MS}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be from 0 to 1")

    @property
    def active(self) -> bool:
        return self.down or self.latency_ms > 0 or self.error_rate > 0

    def to_json(self) -> dict[str, Any]:
        return {"down": self.down, "latencyMs": self.latency_ms, "errorRate": self.error_rate}


def parse_fault_settings(body: Any) -> FaultSettings:
    """The POST body as FaultSettings; a 400 naming the field for anything else."""
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    for key in body:
        if key not in FAULT_FIELDS:
            raise invalid(shorten(key), f"is not a known field (use {', '.join(FAULT_FIELDS)})")
    down = body.get("down", False)
    if not isinstance(down, bool):
        raise invalid("down", "must be true or false")
    latency = body.get("latencyMs", 0)
    # bool is an int in Python, but `true` is not a number of milliseconds.
    if isinstance(latency, bool) or not isinstance(latency, int):
        raise invalid("latencyMs", f"must be an integer from 0 to {MAX_LATENCY_MS}")
    if not 0 <= latency <= MAX_LATENCY_MS:
        raise invalid("latencyMs", f"must be an integer from 0 to {MAX_LATENCY_MS}")
    rate = body.get("errorRate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise invalid("errorRate", "must be a number from 0 to 1")
    return FaultSettings(down=down, latency_ms=latency, error_rate=float(rate))


def is_asset_path(path: str) -> bool:
    """Everything under /assets, and nothing else (not /healthz, not /devstack/*)."""
    return path == "/assets" or path.startswith("/assets/")


class Faults:
    """The current setting and the random source that decides which calls fail.

    With a seed, the random sequence restarts from it whenever the setting changes, so the same
    calls after the same POST fail the same way: chaos tests can be replayed exactly.
    """

    def __init__(self, settings: FaultSettings | None = None, *, seed: int | None = None) -> None:
        self._seed = seed
        self._random = random.Random(seed)
        self._settings = settings or FaultSettings()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def set(self, settings: FaultSettings) -> None:
        self._settings = settings
        if self._seed is not None:
            self._random.seed(self._seed)
        logger.warning("faults set: %s", settings.to_json())

    async def before_asset_call(self) -> Problem | None:
        """Wait out the latency, then the 503 to answer instead of the call (None: go on)."""
        settings = self._settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        if settings.down:
            return _unavailable("the asset service is down", "down")
        if settings.error_rate and self._random.random() < settings.error_rate:
            return _unavailable(
                f"injected error (errorRate {settings.error_rate:g}); try again", "errorRate"
            )
        return None


def _unavailable(what: str, fault: str) -> Problem:
    return Problem(
        503,
        f"{what} (devstack fault injection; POST /devstack/faults {{}} clears it)",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extensions={"fault": fault},
    )


class FaultInjection:
    """ASGI middleware in front of the routes: asset calls meet the faults first."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self._app = app
        self._faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_asset_path(scope["path"]):
            problem = await self._faults.before_asset_call()
            if problem is not None:
                await problem.response()(scope, receive, send)
                return
        await self._app(scope, receive, send)


class FaultRoutes:
    """GET and POST /devstack/faults, behind the API keys (POST needs a read-write key)."""

    def __init__(self, faults: Faults, keys: KeyRing) -> None:
        self._faults = faults
        self._keys = keys

    async def faults(self, request: Request) -> Response:
        """One route for the path, so that a 405 lists both methods."""
        if request.method == "POST":
            return await self.set_faults(request)
        return await self.get_faults(request)

    async def get_faults(self, request: Request) -> Response:
        self._keys.authorize(request.headers, write=False)
        return JSONResponse(self._faults.settings.to_json())

    async def set_faults(self, request: Request) -> Response:
        self._keys.authorize(request.headers, write=True)
        settings = parse_fault_settings(await read_json(request))
        self._faults.set(settings)
        return JSONResponse(settings.to_json())
