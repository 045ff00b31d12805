"""A v2 FunctionApp with queue triggers and queue output bindings, driven through Azurite.

Every function appends what it received as JSON lines to the file named by the app setting
QUEUE_RECORD_FILE, so a test can assert exactly what the trigger argument held and when.
Queue names come from app settings (`%...%`), so each test host uses queues of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any, List  # noqa: UP035 - the worker rejects PEP 585 list[...] annotations

import azure.functions as func

RECORD_FILE = os.environ.get("QUEUE_RECORD_FILE")
if not RECORD_FILE:
    raise RuntimeError("app setting QUEUE_RECORD_FILE is required but not set")

STORAGE = "AzureWebJobsStorage"

_record_lock = threading.Lock()


def record(entry: dict[str, Any]) -> None:
    with _record_lock, open(str(RECORD_FILE), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.queue_trigger(arg_name="msg", queue_name="%ITEMS_QUEUE%", connection=STORAGE)
async def record_item(msg: func.QueueMessage, context: func.Context) -> None:
    """Record every field of the message; slow enough for concurrent messages to overlap."""
    started = time.time()
    await asyncio.sleep(0.2)
    record(
        {
            "function": "record_item",
            "kind": type(msg).__name__,
            "invocation_id": context.invocation_id,
            "id": msg.id,
            "body": msg.get_body().decode("utf-8", errors="replace"),
            "body_hex": msg.get_body().hex(),
            "dequeue_count": msg.dequeue_count,
            "insertion_time": _iso(msg.insertion_time),
            "expiration_time": _iso(msg.expiration_time),
            "time_next_visible": _iso(msg.time_next_visible),
            "pop_receipt": msg.pop_receipt,
            "started": started,
            "finished": time.time(),
        }
    )


@app.queue_trigger(arg_name="msg", queue_name="%FLAKY_QUEUE%", connection="FlakyStorage")
@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:01")
def flaky(msg: func.QueueMessage) -> None:
    """Body {"run": ..., "failures": n}: fails while dequeue_count <= n (n < 0: always)."""
    order = msg.get_json()
    record(
        {
            "function": "flaky",
            "run": order["run"],
            "id": msg.id,
            "dequeue_count": msg.dequeue_count,
            "at": time.time(),
        }
    )
    failures = int(order["failures"])
    if failures < 0 or (msg.dequeue_count or 0) <= failures:
        raise RuntimeError(f"flaky run {order['run']} fails attempt {msg.dequeue_count}")


@app.queue_trigger(arg_name="text", queue_name="%TEXT_QUEUE%", connection=STORAGE)
def record_text(text: str) -> None:
    """A str annotation: the worker's generic binding hands over the message text."""
    record({"function": "record_text", "type": type(text).__name__, "value": text})


@app.queue_trigger(arg_name="msg", queue_name="%FORWARD_QUEUE%", connection=STORAGE)
@app.queue_output(arg_name="$return", queue_name="%OUTPUT_QUEUE%", connection=STORAGE)
def forward(msg: func.QueueMessage) -> str:
    """A queue output bound to the return value of a queue-triggered function."""
    return f"forwarded {msg.get_body().decode()}"


@app.route(route="enqueue", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUTPUT_QUEUE%", connection=STORAGE)
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=200)


@app.route(route="enqueue-many", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUTPUT_QUEUE%", connection=STORAGE)
def enqueue_many(req: func.HttpRequest, out: func.Out[List[str]]) -> func.HttpResponse:  # noqa: UP006
    messages = req.get_json()
    out.set(messages)
    return func.HttpResponse(f"queued {len(messages)}", status_code=200)


@app.route(route="enqueue-then-fail", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUTPUT_QUEUE%", connection=STORAGE)
def enqueue_then_fail(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    raise RuntimeError("failing after setting the output")


@app.route(route="enqueue-down", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUTPUT_QUEUE%", connection="DownStorage")
def enqueue_down(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    """DownStorage points at a port where no Azurite listens."""
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=200)
