"""The audit queue trigger: bound as the Functions host expects, handing messages to the writer."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage

from audit.blueprint import audit_blueprint
from observability.flow_spans import TraceContext


class RecordingWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, Any]]] = []

    async def handle(self, body: bytes, **options: Any) -> str:
        self.calls.append((body, options))
        return "written"


def registered(services: Any) -> Any:
    app = func.FunctionApp()
    app.register_functions(audit_blueprint(lambda: services))
    [function] = app.get_functions()
    return function


TRACE_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = {"parent": TraceContext(TRACE_PARENT, "vendor=1")}


def test_the_trigger_listens_on_the_audit_queue_setting() -> None:
    function = registered(None)
    assert function.get_function_name() == "audit_writer"
    trigger = json.loads(function.get_function_json())["bindings"][0]
    assert trigger == {
        "type": "queueTrigger",
        "direction": "IN",
        "name": "message",
        "queueName": "%AUDIT_QUEUE%",
        "connection": "AzureWebJobsStorage",
    }


async def test_a_message_reaches_the_writer_with_its_dequeue_count_and_invocation() -> None:
    writer = RecordingWriter()
    audit_writer = registered(SimpleNamespace(audit_writer=writer)).get_user_function()
    trace_context = SimpleNamespace(trace_parent=TRACE_PARENT, trace_state="vendor=1")
    context = SimpleNamespace(invocation_id="inv-1", trace_context=trace_context)
    await audit_writer(QueueMessage(body=b'{"x": 1}', dequeue_count=3), context)
    await audit_writer(QueueMessage(body=b"{}", dequeue_count=None), context)
    assert writer.calls == [
        (b'{"x": 1}', {"dequeue_count": 3, "request_id": "inv-1", **TRACE}),
        (b"{}", {"dequeue_count": 1, "request_id": "inv-1", **TRACE}),
    ]


def test_no_area_imports_the_composition_root() -> None:
    """The areas' blueprints get their services handed in by function_app, so no package
    depends on bootstrap (which depends on them all): no import cycle through it."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    importers = []
    for path in repo.glob("*/**/*.py"):
        top = path.relative_to(repo).parts[0]
        if top in ("tests", "devstack", "bench", ".venv", ".venv313", "node_modules"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            ) + ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if "bootstrap" in names:
                importers.append(str(path.relative_to(repo)))
    assert importers == []
