"""The dev host's ASGI app: HTTP triggers, Event Grid webhook, admin endpoints, queue listeners."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from devstack.function_host import trigger_inputs
from devstack.function_host.app_loader import EVENT_GRID_TRIGGER, HTTP_METHODS, FunctionSpec
from devstack.function_host.banner import function_list
from devstack.function_host.errors import BodyTooLarge, InvocationFailed, TriggerInputError
from devstack.function_host.eventgrid_webhook import BadDelivery, parse_delivery
from devstack.function_host.eventhub_delivery import EventHubDelivery
from devstack.function_host.eventhub_events import BadEventBatch, parse_events
from devstack.function_host.eventhub_listeners import build_listeners
from devstack.function_host.host_config import DEFAULT_MAX_EVENT_BATCH_SIZE, QueuesOptions
from devstack.function_host.http_bridge import (
    UnsupportedReturn,
    read_body,
    to_function_request,
    to_response,
)
from devstack.function_host.invocation import Invoker
from devstack.function_host.json_input import json_object
from devstack.function_host.keys import KEY_QUERY, KeyPolicy, presented_key
from devstack.function_host.output_bindings import OutputBindings
from devstack.function_host.queue_trigger import QueueTriggers
from devstack.function_host.routing import MethodNotAllowed, RouteTable
from devstack.function_host.storage_queues import QueueClients, QueueWatcher

logger = logging.getLogger("devstack.function_host")
access_logger = logging.getLogger("devstack.function_host.access")

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
HOST_VERSION = "4.x-devstack"
_SHUTDOWN_GRACE_SECONDS = 5.0
_HOST_API_REASON = "This function was programmatically called via the host APIs."
EVENT_HUBS_PATH = "/admin/devstack/eventhubs"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HostOptions:
    """How the host was started."""

    script_root: Path
    route_prefix: str
    keys: KeyPolicy
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "127.0.0.1"
    port: int = 7071
    ready_file: Path | None = None
    max_event_batch_size: int = DEFAULT_MAX_EVENT_BATCH_SIZE
    queues: QueuesOptions = field(default_factory=QueuesOptions)


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse({"error": "not found", "detail": detail}, status_code=404)


def _bad_request(detail: str) -> JSONResponse:
    return JSONResponse({"error": "bad request", "detail": detail}, status_code=400)


def _too_large(exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse({"error": "payload too large", "limit": exc.limit}, status_code=413)


def _unauthorized() -> Response:
    return Response(status_code=401)


def _query_lower(request: Request) -> dict[str, str]:
    """Query parameters with lower-cased names, first value wins (ASP.NET is case-insensitive)."""
    query: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        query.setdefault(name.lower(), value)
    return query


def mask_query(query_string: str) -> str:
    """Replace every `code` value with **** so keys never reach the log."""
    parts = []
    for part in query_string.split("&") if query_string else []:
        name, eq, _ = part.partition("=")
        parts.append(f"{name}=****" if eq and unquote_plus(name).lower() == KEY_QUERY else part)
    return "&".join(parts)


class AccessLog:
    """ASGI middleware: one line per request with method, path, masked query, status, ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            query = mask_query(scope.get("query_string", b"").decode("latin-1"))
            target = scope["path"] + (f"?{query}" if query else "")
            access_logger.info(
                "%s %s %d %.1fms",
                scope["method"],
                target,
                status,
                (time.perf_counter() - started) * 1000,
            )


class FunctionHost:
    """Indexed functions plus the endpoints that invoke them."""

    def __init__(self, functions: Sequence[FunctionSpec], options: HostOptions) -> None:
        self.options = options
        self.functions = list(functions)
        self._by_name = {spec.name.lower(): spec for spec in functions}
        self._routes: RouteTable[FunctionSpec] = RouteTable(
            options.route_prefix,
            ((s.http.route, s.http.methods, s) for s in functions if s.http is not None),
        )
        # App settings are environment variables by now (local.settings.json Values applied).
        self._queue_clients = QueueClients(os.environ)
        watcher = QueueWatcher()
        self._invoker = Invoker(
            function_directory=str(options.script_root),
            output_bindings=OutputBindings(
                self.functions,
                os.environ,
                self._queue_clients,
                options.queues.message_encoding,
                watcher,
            ),
        )
        self._queue_triggers = QueueTriggers(
            self.functions,
            os.environ,
            self._queue_clients,
            self._invoker,
            options.queues,
            watcher,
        )
        self._event_hubs = EventHubDelivery(
            build_listeners(self.functions, os.environ),
            self._invoker,
            max_batch_size=options.max_event_batch_size,
        )
        self._started = time.monotonic()
        self._host_id = socket.gethostname().lower()[:32] or "localhost"
        self._background: set[asyncio.Task[None]] = set()

    def asgi_app(self) -> ASGIApp:
        """The Starlette app wrapped in the access log."""
        routes = [
            Route("/admin/host/status", self.host_status, methods=["GET"]),
            Route("/admin/functions/{name}", self.admin_invoke, methods=["POST"]),
            Route("/runtime/webhooks/eventgrid", self.event_grid, methods=["POST", "OPTIONS"]),
            Route(EVENT_HUBS_PATH + "/{name}", self.event_hub_delivery, methods=["POST"]),
            Route("/{path:path}", self.http_trigger, methods=sorted(HTTP_METHODS)),
        ]
        return AccessLog(Starlette(routes=routes, lifespan=self._lifespan))

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        announcer = asyncio.create_task(self._announce())
        self._queue_triggers.start()
        try:
            yield
        finally:
            logger.info("Host stopping")
            announcer.cancel()
            # Like the host: listeners stop first, then running invocations get a grace period.
            await self._queue_triggers.stop(_SHUTDOWN_GRACE_SECONDS)
            await self._drain_background()
            await self._queue_clients.close()
            logger.info("Host stopped")

    async def _announce(self) -> None:
        """Print the function list once the listening URL is known (port 0 resolves late)."""
        base_url = f"http://{self.options.host}:{self.options.port}"
        ready_file = self.options.ready_file
        if self.options.port == 0 and ready_file is not None:
            for _ in range(500):
                with contextlib.suppress(OSError, ValueError):
                    base_url = str(json.loads(ready_file.read_text())["url"])
                    break
                await asyncio.sleep(0.02)
        hubs = {item.spec.name: item.event_hub_name for item in self._event_hubs.listeners}
        print(
            function_list(self.functions, base_url, self.options.route_prefix, hubs),
            flush=True,
        )
        logger.info("Host started", extra={"url": base_url, "functions": len(self.functions)})

    async def _drain_background(self) -> None:
        if not self._background:
            return
        logger.info("waiting for background invocations", extra={"count": len(self._background)})
        _, pending = await asyncio.wait(self._background, timeout=_SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # --- endpoints -------------------------------------------------------------------------

    async def host_status(self, request: Request) -> Response:
        """Core Tools' GET /admin/host/status."""
        return JSONResponse(
            {
                "id": self._host_id,
                "state": "Running",
                "version": HOST_VERSION,
                "processUptime": int((time.monotonic() - self._started) * 1000),
            }
        )

    async def http_trigger(self, request: Request) -> Response:
        """Route a request to its HTTP-triggered function and return what the function returns."""
        resolved = self._routes.resolve(request.scope["path"], request.method)
        if resolved is None:
            return _not_found(f"no function matches {request.scope['path']}")
        if isinstance(resolved, MethodNotAllowed):
            allowed = ", ".join(sorted(resolved.allowed))
            return JSONResponse(
                {"error": "method not allowed", "allowed": sorted(resolved.allowed)},
                status_code=405,
                headers={"allow": allowed},
            )
        spec = resolved.target
        assert spec.http is not None
        if not self.options.keys.allows(spec.http.auth_level, self._presented_key(request)):
            return _unauthorized()
        try:
            body = await read_body(request, self.options.max_body_bytes)
        except BodyTooLarge as exc:
            return _too_large(exc)
        function_request = to_function_request(request, body, resolved.route_params)
        try:
            result = await self._invoker.invoke(
                spec,
                function_request,
                reason=_HOST_API_REASON,
                trace_parent=request.headers.get("traceparent"),
                trace_state=request.headers.get("tracestate"),
            )
        except InvocationFailed:
            return PlainTextResponse("Internal Server Error", status_code=500)
        value = self._http_output(spec, result.return_value, result.outputs)
        try:
            return to_response(value)
        except UnsupportedReturn:
            logger.exception("bad return value", extra={"function": spec.name})
            return PlainTextResponse("Internal Server Error", status_code=500)

    async def event_grid(self, request: Request) -> Response:
        """The Event Grid extension's webhook: validation handshake, then one call per event."""
        if request.method == "OPTIONS":
            # CloudEvents abuse-protection handshake.
            origin = request.headers.get("webhook-request-origin", "*")
            return Response(headers={"webhook-allowed-origin": origin, "webhook-allowed-rate": "*"})
        if not self.options.keys.allows_admin(self._presented_key(request)):
            return _unauthorized()
        name = _query_lower(request).get("functionname", "")
        spec = self._by_name.get(name.lower())
        if spec is None or spec.trigger.type != EVENT_GRID_TRIGGER:
            return _not_found(f"no eventGridTrigger function named {name!r}")
        try:
            body = await read_body(request, self.options.max_body_bytes)
            delivery = parse_delivery(request.headers, body)
            if delivery.kind == "validation":
                logger.info("Event Grid subscription validated", extra={"function": spec.name})
                return JSONResponse({"validationResponse": delivery.validation_code})
            if delivery.kind == "unsubscribe":
                return Response(status_code=202)
            arguments = [trigger_inputs.event_grid_event(event) for event in delivery.events]
        except BodyTooLarge as exc:
            return _too_large(exc)
        except (BadDelivery, TriggerInputError) as exc:
            return _bad_request(str(exc))
        failed = []
        for event, argument in zip(delivery.events, arguments, strict=True):
            try:
                await self._invoker.invoke(
                    spec,
                    argument,
                    reason=f"EventGrid trigger fired for event {event.get('id')}",
                    trace_parent=request.headers.get("traceparent"),
                )
            except InvocationFailed:
                failed.append(event.get("id"))
        if failed:
            return JSONResponse(
                {"error": "function failed", "failedEventIds": failed}, status_code=500
            )
        return Response(status_code=200)

    async def event_hub_delivery(self, request: Request) -> Response:
        """Dev-only Event Hub endpoint: deliver events to every function listening on the hub.

        Answers once every invocation (retries included) has finished: 200 with counts, 404
        when no function listens (the sender keeps its events), 400 on a malformed body.
        """
        if not self.options.keys.allows_admin(self._presented_key(request)):
            return _unauthorized()
        name = request.path_params["name"]
        if not self._event_hubs.listeners_for(name):
            return JSONResponse(
                {
                    "error": "not found",
                    "detail": f"no eventHubTrigger function listens on event hub {name!r}",
                    "eventHubs": self._event_hubs.hub_names(),
                },
                status_code=404,
            )
        try:
            events = parse_events(await read_body(request, self.options.max_body_bytes))
        except BodyTooLarge as exc:
            return _too_large(exc)
        except BadEventBatch as exc:
            return _bad_request(str(exc))
        result = await self._event_hubs.deliver(name, events)
        return JSONResponse(result.as_json())

    async def admin_invoke(self, request: Request) -> Response:
        """Core Tools' POST /admin/functions/<name> {"input": ...}: run a non-HTTP function."""
        if not self.options.keys.allows_admin(self._presented_key(request)):
            return _unauthorized()
        name = request.path_params["name"]
        spec = self._by_name.get(name.lower())
        if spec is None:
            return _not_found(f"no function named {name!r}")
        if spec.http is not None:
            return _bad_request(
                f"{spec.name} is HTTP-triggered: call it over HTTP at its route, "
                "not through /admin/functions"
            )
        try:
            body = await read_body(request, self.options.max_body_bytes)
            raw_input = _admin_input(body)
            argument = trigger_inputs.trigger_argument(spec, raw_input)
        except BodyTooLarge as exc:
            return _too_large(exc)
        except (ValueError, TriggerInputError) as exc:
            return _bad_request(str(exc))
        task = asyncio.create_task(self._run_in_background(spec, argument))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return Response(status_code=202)

    # --- helpers ----------------------------------------------------------------------------

    async def _run_in_background(self, spec: FunctionSpec, argument: Any) -> None:
        with contextlib.suppress(InvocationFailed):
            await self._invoker.invoke(
                spec,
                argument,
                reason=_HOST_API_REASON,
            )

    def _presented_key(self, request: Request) -> str | None:
        return presented_key(request.headers, _query_lower(request))

    @staticmethod
    def _http_output(spec: FunctionSpec, returned: Any, outputs: Mapping[str, Any]) -> Any:
        """The http output binding's value: `$return` or a named func.Out parameter."""
        for binding in spec.bindings:
            if binding.type == "http" and binding.is_output and binding.name != "$return":
                return outputs.get(binding.name)
        return returned


def _admin_input(body: bytes) -> str:
    """The `input` of an admin invoke body; non-string inputs are passed on as JSON text."""
    if not body.strip():
        return ""
    payload = json_object(
        body,
        ValueError,
        not_json='body must be JSON like {"input": "..."}',
        not_object='body must be a JSON object like {"input": "..."}',
    )
    value = payload.get("input", "")
    return value if isinstance(value, str) else json.dumps(value)
