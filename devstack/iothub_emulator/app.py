"""HTTP surface of the emulator: one ASGI app for every hub, told apart by the local port.

Each request: pick the hub, authenticate, apply an injected fault, route, check rights,
take a throttling token, then run the hub operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .continuation import continuation_token, resume_after
from .devices import Device
from .errors import IotHubError, argument_invalid, injected, throttled, unauthorized
from .faults import parse_fault
from .policies import Right
from .query import QuerySyntaxError, parse_query
from .runtime import HubRuntime
from .sas import Principal
from .throttling import TokenBucket

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
MAX_BODY_BYTES = 256 * 1024
_LIST_LIMIT = 1000
_EVENTS_LIMIT = 1000
_QUERY_PAGE_DEFAULT = 100

log = logging.getLogger(__name__)


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(text, status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


def error_response(error: IotHubError) -> Response:
    return json_response(error.to_json(), error.status, error.headers)


@dataclass(frozen=True)
class Call:
    """One routed request."""

    runtime: HubRuntime
    principal: Principal
    request: Request
    params: tuple[str, ...]

    @property
    def device_id(self) -> str:
        return self.params[0]

    @property
    def if_match(self) -> str | None:
        return self.request.headers.get("if-match")

    async def json(self) -> Any:
        raw = await self.request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise argument_invalid(f"the body is larger than {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise argument_invalid(f"the body is not valid JSON: {exc}") from None

    def int_query(self, name: str, default: int, maximum: int) -> int:
        value = self.request.query_params.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise argument_invalid(f"{name} must be a whole number") from None
        return max(0, min(number, maximum))


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    handler: Handler
    rights: frozenset[Right]  # any one of them suffices; empty: any authenticated caller
    service_api: bool = True  # IoT Hub API (needs api-version) rather than a devstack extra


def _device_response(device: Device) -> Response:
    return json_response(device.to_json(), headers={"ETag": f'"{device.etag}"'})


def _twin_response(twin: dict[str, Any]) -> Response:
    return json_response(twin, headers={"ETag": f'"{twin["etag"]}"'})


def _take(bucket: TokenBucket | None, what: str) -> None:
    if bucket is not None:
        wait = bucket.take()
        if wait > 0:
            raise throttled(wait, what)


async def list_devices(call: Call) -> Response:
    limit = call.int_query("top", _LIST_LIMIT, _LIST_LIMIT)
    return json_response([d.to_json() for d in call.runtime.hub.list_devices(limit)])


async def get_device(call: Call) -> Response:
    return _device_response(call.runtime.hub.get_device(call.device_id))


async def put_device(call: Call) -> Response:
    _take(call.runtime.identity_ops, "identity registry operations")
    body = await call.json()
    return _device_response(call.runtime.hub.put_device(call.device_id, body, call.if_match))


async def delete_device(call: Call) -> Response:
    _take(call.runtime.identity_ops, "identity registry operations")
    call.runtime.hub.delete_device(call.device_id, call.if_match)
    return Response(status_code=204)


async def get_twin(call: Call) -> Response:
    return _twin_response(call.runtime.hub.get_twin(call.device_id))


async def query_twins(call: Call) -> Response:
    """POST /devices/query: one page of twins, and x-ms-continuation while more match."""
    _take(call.runtime.queries, "queries")
    body = await call.json()
    text = body.get("query") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise argument_invalid('the body must be {"query": "SELECT * FROM devices ..."}')
    try:
        query = parse_query(text)
    except QuerySyntaxError as exc:
        raise IotHubError(400, "BadRequest", f"the query could not be parsed: {exc}") from None
    page_size = _page_size(call, call.runtime.query_page_size_max)
    token = call.request.headers.get("x-ms-continuation")
    after = resume_after(token, text) if token else None
    twins, last = call.runtime.hub.query_twins(query, page_size, after)
    headers = {"x-ms-item-type": "twin"}
    if last is not None:
        headers["x-ms-continuation"] = continuation_token(text, last)
    return json_response(twins, headers=headers)


def _page_size(call: Call, maximum: int) -> int:
    """x-ms-max-item-count, served up to the hub's maximum; 100 when the header is absent."""
    value = call.request.headers.get("x-ms-max-item-count")
    if value is None:
        return min(_QUERY_PAGE_DEFAULT, maximum)
    try:
        asked = int(value)
    except ValueError:
        raise argument_invalid("x-ms-max-item-count must be a whole number") from None
    if asked < 1:
        raise argument_invalid("x-ms-max-item-count must be at least 1")
    return min(asked, maximum)


async def update_twin(call: Call) -> Response:
    _take(call.runtime.twin_updates, "twin updates")
    body = await call.json()
    return _twin_response(call.runtime.hub.update_twin(call.device_id, body, call.if_match))


async def replace_twin(call: Call) -> Response:
    _take(call.runtime.twin_updates, "twin updates")
    body = await call.json()
    return _twin_response(call.runtime.hub.replace_twin(call.device_id, body, call.if_match))


async def update_reported(call: Call) -> Response:
    _take(call.runtime.twin_updates, "twin updates")
    body = await call.json()
    return _twin_response(call.runtime.hub.update_reported(call.device_id, body))


def _faults_response(call: Call) -> Response:
    return json_response({"faults": [rule.to_json() for rule in call.runtime.faults.rules()]})


async def get_faults(call: Call) -> Response:
    return _faults_response(call)


async def post_fault(call: Call) -> Response:
    body = await call.json()
    if not isinstance(body, dict):
        raise argument_invalid('a fault is a JSON object, e.g. {"status": 503, "count": 3}')
    if body:
        call.runtime.faults.add(parse_fault(body))
    else:
        call.runtime.faults.clear()
    return _faults_response(call)


async def delete_faults(call: Call) -> Response:
    call.runtime.faults.clear()
    return _faults_response(call)


async def get_stats(call: Call) -> Response:
    return json_response({"connections": len(call.runtime.clients)})


async def list_events(call: Call) -> Response:
    after = call.int_query("after", 0, 2**62)
    limit = call.int_query("limit", _EVENTS_LIMIT, _EVENTS_LIMIT)
    events = call.runtime.hub.store.events_after(after, limit)
    # Stored events are JSON already: splice them in rather than parse and re-serialize.
    text = '{"events":[' + ",".join(event for _, event in events) + "]}"
    return Response(text, media_type=JSON_MEDIA_TYPE)


_READ = frozenset({Right.REGISTRY_READ})
_WRITE = frozenset({Right.REGISTRY_WRITE})
_TWIN_READ = frozenset({Right.REGISTRY_READ, Right.SERVICE_CONNECT})
_TWIN_WRITE = frozenset({Right.SERVICE_CONNECT})
_ANY: frozenset[Right] = frozenset()

# Path templates (None captures one URL-decoded segment) and the methods each allows.
# The first template that matches wins: devices/query before devices/{id}.
ROUTES: tuple[tuple[tuple[str | None, ...], dict[str, Endpoint]], ...] = (
    (("devices",), {"GET": Endpoint(list_devices, _READ)}),
    (("devices", "query"), {"POST": Endpoint(query_twins, _TWIN_READ)}),
    (
        ("devices", None),
        {
            "GET": Endpoint(get_device, _READ),
            "PUT": Endpoint(put_device, _WRITE),
            "DELETE": Endpoint(delete_device, _WRITE),
        },
    ),
    (
        ("twins", None),
        {
            "GET": Endpoint(get_twin, _TWIN_READ),
            "PATCH": Endpoint(update_twin, _TWIN_WRITE),
            "PUT": Endpoint(replace_twin, _TWIN_WRITE),
        },
    ),
    (
        ("devstack", "faults"),
        {
            "GET": Endpoint(get_faults, _ANY, service_api=False),
            "POST": Endpoint(post_fault, _ANY, service_api=False),
            "DELETE": Endpoint(delete_faults, _ANY, service_api=False),
        },
    ),
    (("devstack", "events"), {"GET": Endpoint(list_events, _ANY, service_api=False)}),
    (("devstack", "stats"), {"GET": Endpoint(get_stats, _ANY, service_api=False)}),
    (
        ("devstack", "twins", None, "reported"),
        {"PATCH": Endpoint(update_reported, _ANY, service_api=False)},
    ),
)


def _segments(scope: Mapping[str, Any]) -> list[str]:
    """Path segments decoded one by one, so an escaped device id never splits the path."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])
    path = path.split("?", 1)[0]
    return [unquote(segment) for segment in path.strip("/").split("/")] if path != "/" else []


def route(segments: Sequence[str]) -> tuple[dict[str, Endpoint], tuple[str, ...]] | None:
    for template, methods in ROUTES:
        if len(template) != len(segments):
            continue
        params: list[str] = []
        for expected, actual in zip(template, segments, strict=True):
            if expected is None:
                params.append(actual)
            elif expected != actual.lower():
                break
        else:
            return methods, tuple(params)
    return None


class EmulatorApp:
    """The catch-all endpoint: dispatches to the hub that owns the local port."""

    def __init__(self, runtimes: Sequence[HubRuntime]) -> None:
        self._by_port = {runtime.endpoint.port: runtime for runtime in runtimes}
        self._runtimes = list(runtimes)

    def _runtime(self, request: Request) -> HubRuntime:
        server = request.scope.get("server")
        if server and server[1] in self._by_port:
            return self._by_port[server[1]]
        if len(self._runtimes) == 1:
            return self._runtimes[0]
        raise IotHubError(404, "IotHubNotFound", f"no emulated hub listens on {server}")

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except IotHubError as error:
            return error_response(error)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(
                IotHubError(500, "ServerError", "the emulator failed; see its log")
            )

    async def _handle(self, request: Request) -> Response:
        runtime = self._runtime(request)
        client = request.scope.get("client")
        if client:
            runtime.clients.add((str(client[0]), int(client[1])))
        principal = runtime.auth.authenticate(request.headers.get("authorization"))
        fault = runtime.faults.take(request.method, request.url.path)
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.status is not None:
                raise injected(fault.status, fault.error_code)
        segments = _segments(request.scope)
        found = route(segments)
        if found is None:
            raise IotHubError(404, "NotFound", f"no route for {request.url.path[:200]}")
        methods, params = found
        endpoint = methods.get(request.method)
        if endpoint is None:
            raise IotHubError(
                405,
                "MethodNotAllowed",
                f"{request.method} is not allowed here",
                headers={"Allow": ", ".join(methods)},
            )
        if endpoint.rights and not endpoint.rights & principal.rights:
            needed = " or ".join(sorted(endpoint.rights))
            raise unauthorized(f"policy {principal.name} lacks {needed}")
        if endpoint.service_api and "api-version" not in request.query_params:
            raise argument_invalid("the api-version query parameter is required")
        return await endpoint.handler(Call(runtime, principal, request, params))


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def create_app(runtimes: Sequence[HubRuntime]) -> Starlette:
    """The ASGI app; its lifespan runs event delivery and closes the databases."""
    emulator = EmulatorApp(runtimes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        deliveries = [r.delivery for r in runtimes if r.delivery is not None]
        async with contextlib.AsyncExitStack() as stack:
            for runtime in runtimes:
                stack.callback(runtime.close)
            if deliveries:
                session = await stack.enter_async_context(aiohttp.ClientSession())
                tasks = [asyncio.create_task(d.run(session)) for d in deliveries]
                stack.push_async_callback(_cancel, tasks)
            yield

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[Route("/{path:path}", emulator.handle, methods=methods)],
        lifespan=lifespan,
    )
