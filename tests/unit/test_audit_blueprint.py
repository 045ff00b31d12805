"""The audit queue trigger: bound as the Functions host expects, handing messages to the writer."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

import bootstrap
from audit.blueprint import audit_writer, blueprint


class RecordingWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, Any]]] = []

    async def handle(self, body: bytes, **options: Any) -> str:
        self.calls.append((body, options))
        return "written"


def test_the_trigger_listens_on_the_audit_queue_setting() -> None:
    app = func.FunctionApp()
    app.register_functions(blueprint)
    [function] = app.get_functions()
    assert function.get_function_name() == "audit_writer"
    trigger = json.loads(function.get_function_json())["bindings"][0]
    assert trigger == {
        "type": "queueTrigger",
        "direction": "IN",
        "name": "message",
        "queueName": "%AUDIT_QUEUE%",
        "connection": "AzureWebJobsStorage",
    }


async def test_a_message_reaches_the_writer_with_its_dequeue_count_and_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer = RecordingWriter()
    monkeypatch.setattr(bootstrap, "services", lambda: SimpleNamespace(audit_writer=writer))
    context = SimpleNamespace(invocation_id="inv-1")
    await audit_writer(QueueMessage(body=b'{"x": 1}', dequeue_count=3), context)
    await audit_writer(QueueMessage(body=b"{}", dequeue_count=None), context)
    assert writer.calls == [
        (b'{"x": 1}', {"dequeue_count": 3, "request_id": "inv-1"}),
        (b"{}", {"dequeue_count": 1, "request_id": "inv-1"}),
    ]
