"""A small v2 FunctionApp exercising what the dev host must serve; the tests drive it over HTTP.

Non-HTTP functions append what they received as JSON lines to the file named by the app
setting SAMPLE_RECORD_FILE, so a test can assert exactly what the trigger argument held.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import azure.functions as func

logger = logging.getLogger("sample")

RECORD_FILE = os.environ.get("SAMPLE_RECORD_FILE")
if not RECORD_FILE:
    # Mirrors how the real app fails at start-up: the message names the missing setting.
    raise RuntimeError("app setting SAMPLE_RECORD_FILE is required but not set")

_record_lock = threading.Lock()


def record(entry: dict[str, Any]) -> None:
    """Append one JSON line; functions may run in several threads at once."""
    with _record_lock, open(str(RECORD_FILE), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


http_bp = func.Blueprint()
events_bp = func.Blueprint()


@http_bp.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
async def echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Echo what the host passed in, including the invocation context."""
    payload = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "body": req.get_body().decode(),
        "test_header": req.headers.get("X-Test"),
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
        "function_directory": context.function_directory,
        "cwd": os.getcwd(),
        "thread": threading.current_thread().name,
    }
    logger.info("echoed", extra={"itemId": req.route_params["id"], "note": "two words"})
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@http_bp.route(route="hello/{who:alpha}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    """A sync function: the host must run it off the event loop."""
    return func.HttpResponse(
        f"hello {req.route_params['who']}",
        status_code=201,
        headers={"x-thread": threading.current_thread().name},
    )


@http_bp.route(route="public", auth_level=func.AuthLevel.ANONYMOUS)
def public(req: func.HttpRequest) -> str:
    logger.warning("public route called", extra={"marker": req.params.get("marker", "-")})
    return "public ok"


@http_bp.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "admin ok"


@http_bp.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom: secret-detail-4711 must not reach the caller")


@http_bp.route(route="settings/{name}", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    """Read an app setting from the environment, as app code does."""
    name = req.route_params["name"]
    return func.HttpResponse(
        json.dumps({"name": name, "value": os.environ.get(name)}), mimetype="application/json"
    )


@http_bp.route(route="things/{tid:guid}", methods=["GET"])
def thing(req: func.HttpRequest) -> str:
    return str(req.route_params["tid"])


@http_bp.route(route="files/{*rest}", methods=["GET"])
def files(req: func.HttpRequest) -> str:
    return str(req.route_params.get("rest", ""))


@http_bp.route(route="upload", methods=["POST"])
async def upload(req: func.HttpRequest) -> str:
    return str(len(req.get_body()))


@events_bp.event_grid_trigger(arg_name="event")
async def record_event(event: func.EventGridEvent, context: func.Context) -> None:
    """Record every field of an Event Grid (or CloudEvents) event."""
    entry: dict[str, Any] = {
        "function": "record_event",
        "kind": type(event).__name__,
        "invocation_id": context.invocation_id,
        "data": event.get_json(),
    }
    if isinstance(event, func.CloudEvent):
        entry |= {
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": _iso(event.time),
        }
    else:
        entry |= {
            "id": event.id,
            "topic": event.topic,
            "subject": event.subject,
            "event_type": event.event_type,
            "event_time": _iso(event.event_time),
            "data_version": event.data_version,
        }
    record(entry)


@events_bp.event_grid_trigger(arg_name="event")
def picky_event(event: func.EventGridEvent) -> None:
    """Fails for subject 'fail' so the webhook must answer 500 and Event Grid redelivers."""
    if event.subject == "fail":
        raise ValueError(f"refusing event {event.id}")
    record({"function": "picky_event", "id": event.id, "subject": event.subject})


@events_bp.queue_trigger(
    arg_name="msg", queue_name="sample-items", connection="AzureWebJobsStorage"
)
@events_bp.queue_output(
    arg_name="forward", queue_name="sample-forward", connection="AzureWebJobsStorage"
)
def record_queue(msg: func.QueueMessage, forward: func.Out[str]) -> None:
    forward.set(f"seen {msg.id}")
    record(
        {
            "function": "record_queue",
            "kind": type(msg).__name__,
            "id": msg.id,
            "body": msg.get_body().decode(),
            "dequeue_count": msg.dequeue_count,
            "insertion_time": _iso(msg.insertion_time),
            "pop_receipt": msg.pop_receipt,
        }
    )


@events_bp.timer_trigger(schedule="0 0 3 * * *", arg_name="timer", run_on_startup=False)
async def record_timer(timer: func.TimerRequest) -> None:
    record({"function": "record_timer", "kind": type(timer).__name__, "past_due": timer.past_due})


@events_bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="twin-changes",
    connection="EventHubConnection",
    cardinality=func.Cardinality.MANY,
)
def record_hub(events: list[func.EventHubEvent]) -> None:
    record(
        {
            "function": "record_hub",
            "is_list": isinstance(events, list),
            "bodies": [e.get_body().decode() for e in events],
            "kinds": [type(e).__name__ for e in events],
        }
    )


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_bp)
app.register_functions(events_bp)
