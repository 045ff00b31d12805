"""The dev functions host as a real child process, driven over real HTTP with the sample app."""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
FUNCTION_KEY = "fn-key-8c1f2a"
MASTER_KEY = "master-key-5d9e7b"
BODY_CAP = 1024
FK = {"x-functions-key": FUNCTION_KEY}
MK = {"x-functions-key": MASTER_KEY}
EVENTGRID = "/runtime/webhooks/eventgrid"


@dataclass
class RunningHost:
    child: Child
    client: httpx.Client
    record_file: Path

    def log(self) -> str:
        assert self.child.log_path is not None
        return self.child.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines() if line]

    def wait_for_records(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1
    ) -> list[dict[str, Any]]:
        """Background invocations finish after the 202: poll the record file."""
        deadline = time.monotonic() + 5
        while True:
            found = [r for r in self.records() if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def wait_for_log(self, text: str) -> str:
        deadline = time.monotonic() + 5
        while text not in (log := self.log()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return log


def _settings(path: Path, values: dict[str, str], **extra: Any) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values, **extra}))
    return path


def _start(
    run_dir: Path, args: list[str], env: dict[str, str] | None = None, name: str = "function-host"
) -> Child:
    return start_child(
        name,
        "devstack.function_host",
        ["--port", "0", *args],
        run_dir=run_dir,
        env=env,
        cwd=REPO_ROOT,
    )


def _running(child: Child, record_file: Path) -> Iterator[RunningHost]:
    try:
        wait_ready(child)
        with httpx.Client(base_url=child.url, timeout=10) as client:
            yield RunningHost(child, client, record_file)
    finally:
        stop_children([child])


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """The sample app with keys enforced, a 1 KiB body cap and one setting overridden by env."""
    run_dir = tmp_path_factory.mktemp("function-host")
    record_file = run_dir / "records.jsonl"
    settings = _settings(
        run_dir / "local.settings.json",
        {
            "SAMPLE_RECORD_FILE": str(record_file),
            "SAMPLE_GREETING": "from-local-settings",
            "SAMPLE_OVERRIDDEN": "from-local-settings",
        },
    )
    args = ["--script-root", str(APPS), "--app", "sample_app:app", "--settings-file", str(settings)]
    args += ["--function-key", FUNCTION_KEY, "--master-key", MASTER_KEY]
    env = {"SAMPLE_OVERRIDDEN": "from-parent-env", "DEVSTACK_MAX_BODY_BYTES": str(BODY_CAP)}
    yield from _running(_start(run_dir, args, env), record_file)


def _script_root(base: Path, route_prefix: str) -> tuple[Path, Path]:
    """A project folder like a real one: host.json, local.settings.json and function_app.py."""
    root = base / "project"
    root.mkdir()
    shutil.copy(APPS / "sample_app.py", root / "function_app.py")
    host_json = {"version": "2.0", "extensions": {"http": {"routePrefix": route_prefix}}}
    (root / "host.json").write_text(json.dumps(host_json))
    record_file = base / "records.jsonl"
    _settings(root / "local.settings.json", {"SAMPLE_RECORD_FILE": str(record_file)})
    return root, record_file


@pytest.fixture(scope="module")
def bare_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """Defaults like `func start` in a project folder: routePrefix "", no keys, default paths."""
    base = tmp_path_factory.mktemp("function-host-bare")
    root, record_file = _script_root(base, route_prefix="")
    child = start_child(
        "function-host", "devstack.function_host", ["--port", "0"], run_dir=base, cwd=root
    )
    yield from _running(child, record_file)


@pytest.fixture(scope="module")
def function_key_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """Only --function-key: HTTP triggers need keys, host endpoints stay open (no master key)."""
    base = tmp_path_factory.mktemp("function-host-fkey")
    root, record_file = _script_root(base, route_prefix="v1")
    args = ["--script-root", str(root), "--function-key", FUNCTION_KEY]
    env = {"DEVSTACK_LOG_LEVEL": "warning"}
    yield from _running(_start(base, args, env, name="function-host-fkey"), record_file)


def _event(event_id: str, subject: str = "assets/AST-1", **fields: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/assets",
        "subject": subject,
        "eventType": "Asset.Changed",
        "eventTime": "2024-05-01T10:00:00.1234567Z",
        "data": {"assetId": "AST-1", "version": 3},
        "dataVersion": "1.0",
        **fields,
    }


def _cloud_event(event_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/assets",
        "type": "Asset.Changed",
        "time": "2024-05-01T10:00:00Z",
        "subject": "assets/AST-2",
        "datacontenttype": "application/json",
        "data": {"assetId": "AST-2"},
    }


# --- start-up ---------------------------------------------------------------------------------


def test_prints_function_list_with_urls(host: RunningHost) -> None:
    log = host.wait_for_log("upload:")
    assert f"echo: [GET,POST] {host.child.url}/api/items/{{id:int}}/{{name?}}" in log
    assert f"record_queue: queueTrigger POST {host.child.url}/admin/functions/record_queue" in log


def test_host_status(host: RunningHost) -> None:
    response = host.client.get("/admin/host/status")
    assert response.status_code == 200
    status = response.json()
    assert status["state"] == "Running"
    assert status["version"] == "4.x-devstack"
    assert isinstance(status["id"], str)
    assert status["id"]
    assert isinstance(status["processUptime"], int)
    assert status["processUptime"] > 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-setting", "SAMPLE_RECORD_FILE is required"),
        ("encrypted", "IsEncrypted"),
        ("no-module", "No module named 'no_such_app'"),
        ("bad-host-json", '"version" must be "2.0"'),
        ("bad-route", "unknown route constraint 'nonsense'"),
    ],
)
def test_startup_failure_exits_1_with_the_reason(tmp_path: Path, case: str, expected: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(APPS, root)
    settings = {"SAMPLE_RECORD_FILE": str(tmp_path / "r.jsonl")}
    app = "sample_app:app"
    if case == "missing-setting":
        settings = {}
    if case == "encrypted":
        (root / "local.settings.json").write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    else:
        _settings(root / "local.settings.json", settings)
    if case == "no-module":
        app = "no_such_app:app"
    if case == "bad-host-json":
        (root / "host.json").write_text('{"version": "1.0"}')
    if case == "bad-route":
        source = (root / "sample_app.py").read_text().replace("{tid:guid}", "{tid:nonsense}")
        (root / "sample_app.py").write_text(source)
    child = _start(tmp_path, ["--script-root", str(root), "--app", app])
    try:
        assert child.process.wait(timeout=20) == 1
    finally:
        stop_children([child])
    output = child.log_path.read_text() if child.log_path else ""
    assert expected in output
    assert "Functions:" not in output
    assert not child.ready_file.exists()


# --- HTTP triggers ----------------------------------------------------------------------------


def test_echo_gets_request_route_params_and_context(host: RunningHost) -> None:
    response = host.client.post(
        "/api/items/42/widget",
        params={"q": "1"},
        content=b"hello body",
        headers=FK | {"X-Test": "t"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["url"] == f"{host.child.url}/api/items/42/widget?q=1"
    assert echo["params"] == {"q": "1"}
    assert echo["route_params"] == {"id": "42", "name": "widget"}
    assert echo["body"] == "hello body"
    assert echo["test_header"] == "t"
    assert echo["function_name"] == "echo"
    assert echo["function_directory"] == str(APPS)
    assert echo["cwd"] == str(APPS), "the worker runs in the script root"
    assert uuid.UUID(echo["invocation_id"]).version == 4
    assert echo["thread"] == "MainThread", "async functions run on the event loop"
    again = host.client.get("/api/items/42", headers=FK).json()
    assert again["route_params"] == {"id": "42"}, "an absent optional parameter is left out"
    assert again["invocation_id"] != echo["invocation_id"]


def test_literal_segments_are_case_insensitive(host: RunningHost) -> None:
    response = host.client.get("/API/Items/7", headers=FK)
    assert response.status_code == 200
    assert response.json()["route_params"] == {"id": "7"}


@pytest.mark.parametrize(
    "path", ["/api/items/abc", "/api/items/1/a/b", "/api/hello/R2D2", "/api/things/not-a-guid"]
)
def test_constraint_mismatch_is_404(host: RunningHost, path: str) -> None:
    response = host.client.get(path, headers=FK)
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


def test_guid_and_catch_all_routes(host: RunningHost) -> None:
    tid = str(uuid.uuid4())
    assert host.client.get(f"/api/things/{tid}", headers=FK).text == tid
    assert host.client.get("/api/files/a/b/c.txt", headers=FK).text == "a/b/c.txt"
    assert host.client.get("/api/files", headers=FK).text == ""


def test_unknown_path_is_404_json(host: RunningHost) -> None:
    response = host.client.get("/nowhere/at/all")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not found",
        "detail": "no function matches /nowhere/at/all",
    }


def test_wrong_method_is_405(host: RunningHost) -> None:
    response = host.client.delete("/api/items/7", headers=FK)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


def test_sync_function_runs_in_a_worker_thread(host: RunningHost) -> None:
    response = host.client.get("/api/hello/World", headers=FK)
    assert response.status_code == 201
    assert response.text == "hello World"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-thread"] != "MainThread"


def test_string_return_is_200_text(host: RunningHost) -> None:
    response = host.client.get("/api/public")
    assert response.status_code == 200
    assert response.text == "public ok"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {}),
        ({"code": "wrong"}, {}),
        ({}, {"x-functions-key": "wrong"}),
        ({"code": FUNCTION_KEY}, {"x-functions-key": "wrong"}),
    ],
    ids=["missing", "wrong-code", "wrong-header", "header-wins-over-code"],
)
def test_function_level_rejects_bad_keys(
    host: RunningHost, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = host.client.get("/api/items/1", params=params, headers=headers)
    assert response.status_code == 401
    assert response.content == b""


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"code": FUNCTION_KEY}, {}),
        ({}, {"x-functions-key": FUNCTION_KEY}),
        ({"code": MASTER_KEY}, {}),
    ],
    ids=["code", "header", "master-key"],
)
def test_function_level_accepts_function_or_master_key(
    host: RunningHost, params: dict[str, str], headers: dict[str, str]
) -> None:
    assert host.client.get("/api/items/1", params=params, headers=headers).status_code == 200


def test_admin_level_needs_the_master_key(host: RunningHost) -> None:
    assert host.client.get("/api/admin-only", headers=FK).status_code == 401
    assert host.client.get("/api/admin-only").status_code == 401
    response = host.client.get("/api/admin-only", params={"code": MASTER_KEY})
    assert response.status_code == 200
    assert response.text == "admin ok"


def test_unhandled_exception_is_500_without_details(host: RunningHost) -> None:
    response = host.client.get("/api/boom", headers=FK)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    log = host.wait_for_log("RuntimeError: boom")
    assert "Executed 'Functions.boom' (Failed" in log
    assert "Traceback (most recent call last)" in log


def test_local_settings_values_are_app_settings_and_env_wins(host: RunningHost) -> None:
    greeting = host.client.get("/api/settings/SAMPLE_GREETING", headers=FK).json()
    assert greeting["value"] == "from-local-settings"
    overridden = host.client.get("/api/settings/SAMPLE_OVERRIDDEN", headers=FK).json()
    assert overridden["value"] == "from-parent-env"


def test_body_at_the_cap_is_accepted(host: RunningHost) -> None:
    response = host.client.post("/api/upload", content=b"x" * BODY_CAP, headers=FK)
    assert response.status_code == 200
    assert response.text == str(BODY_CAP)


def test_oversized_body_is_413(host: RunningHost) -> None:
    response = host.client.post("/api/upload", content=b"x" * (BODY_CAP + 1), headers=FK)
    assert response.status_code == 413


def test_oversized_chunked_body_is_413(host: RunningHost) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * 400

    response = host.client.post("/api/upload", content=chunks(), headers=FK)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_log_lines_carry_structured_fields(host: RunningHost) -> None:
    host.client.get("/api/items/31337", headers=FK)
    log = host.wait_for_log("itemId=31337")
    assert ' INFO sample: echoed itemId=31337 note="two words"\n' in log
    host.client.get("/api/public", params={"marker": "fields-check"})
    log = host.wait_for_log("marker=fields-check")
    assert " WARNING sample: public route called marker=fields-check\n" in log


def test_code_is_masked_in_the_access_log(host: RunningHost) -> None:
    host.client.get("/api/public", params={"probe": "mask-check", "code": FUNCTION_KEY})
    log = host.wait_for_log("probe=mask-check")
    assert "GET /api/public?probe=mask-check&code=*** 200" in log
    assert FUNCTION_KEY not in log
    assert MASTER_KEY not in log


# --- Event Grid -------------------------------------------------------------------------------


def _post_events(
    host: RunningHost, function: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return host.client.post(
        EVENTGRID,
        params={"functionName": function, "code": MASTER_KEY},
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers=headers if headers is not None else {"aeg-event-type": "Notification"},
    )


def test_event_grid_subscription_validation(host: RunningHost) -> None:
    validation = {
        "id": "v1",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "dataVersion": "1",
    }
    headers = {"aeg-event-type": "SubscriptionValidation"}
    response = _post_events(host, "record_event", [validation], headers)
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_event_grid_notification_decodes_every_field(host: RunningHost) -> None:
    ids = [f"eg-{uuid.uuid4()}", f"eg-{uuid.uuid4()}"]
    response = _post_events(host, "record_event", [_event(ids[0]), _event(ids[1], subject="s2")])
    assert response.status_code == 200
    first, second = (next(r for r in host.records() if r.get("id") == i) for i in ids)
    assert first == {
        "function": "record_event",
        "kind": "EventGridEvent",
        "invocation_id": first["invocation_id"],
        "id": ids[0],
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/assets",
        "subject": "assets/AST-1",
        "event_type": "Asset.Changed",
        "event_time": "2024-05-01T10:00:00.123456+00:00",
        "data": {"assetId": "AST-1", "version": 3},
        "data_version": "1.0",
    }
    assert second["subject"] == "s2"
    assert first["invocation_id"] != second["invocation_id"], "one invocation per event"


@pytest.mark.parametrize(
    ("content_type", "batch", "event_type_header"),
    [
        ("application/cloudevents+json", False, None),
        ("application/cloudevents-batch+json", True, None),
        ("application/json", True, None),
        ("application/json", True, "Notification"),
    ],
    ids=["structured", "batch", "plain-array", "notification-header"],
)
def test_event_grid_cloud_events(
    host: RunningHost, content_type: str, batch: bool, event_type_header: str | None
) -> None:
    event_id = f"ce-{uuid.uuid4()}"
    headers = {"content-type": content_type}
    if event_type_header:
        headers["aeg-event-type"] = event_type_header
    body = [_cloud_event(event_id)] if batch else _cloud_event(event_id)
    response = _post_events(host, "record_event", body, headers)
    assert response.status_code == 200
    (recorded,) = [r for r in host.records() if r.get("id") == event_id]
    assert recorded["kind"] == "CloudEvent"
    assert recorded["source"] == "/assets"
    assert recorded["type"] == "Asset.Changed"
    assert recorded["subject"] == "assets/AST-2"
    assert recorded["time"] == "2024-05-01T10:00:00+00:00"
    assert recorded["data"] == {"assetId": "AST-2"}


def test_cloud_events_content_type_requires_specversion(host: RunningHost) -> None:
    event = _cloud_event(f"ce-{uuid.uuid4()}")
    del event["specversion"]
    headers = {"content-type": "application/cloudevents+json"}
    response = _post_events(host, "record_event", event, headers)
    assert response.status_code == 400
    assert "without specversion" in response.json()["detail"]


def test_event_grid_failing_event_is_500(host: RunningHost) -> None:
    ok_id, bad_id = f"ok-{uuid.uuid4()}", f"bad-{uuid.uuid4()}"
    response = _post_events(host, "picky_event", [_event(ok_id), _event(bad_id, subject="fail")])
    assert response.status_code == 500
    assert response.json()["failedEventIds"] == [bad_id]
    recorded = [r["id"] for r in host.records() if r.get("function") == "picky_event"]
    assert ok_id in recorded
    assert bad_id not in recorded


@pytest.mark.parametrize(
    ("function", "code", "body", "headers", "status"),
    [
        ("no_such_function", MASTER_KEY, [], None, 404),
        ("record_queue", MASTER_KEY, [], None, 404),
        ("record_event", MASTER_KEY, b"{not json", None, 400),
        ("record_event", MASTER_KEY, [{"id": "x"}], {}, 400),
        ("record_event", FUNCTION_KEY, [], None, 401),
    ],
    ids=["unknown", "not-event-grid", "malformed", "no-event-type", "function-key"],
)
def test_event_grid_errors(
    host: RunningHost,
    function: str,
    code: str,
    body: Any,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    response = host.client.post(
        EVENTGRID,
        params={"functionName": function, "code": code},
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers=headers if headers is not None else {"aeg-event-type": "Notification"},
    )
    assert response.status_code == status


# --- admin invoke of non-HTTP functions -------------------------------------------------------


def _invoke(host: RunningHost, function: str, payload: Any) -> httpx.Response:
    return host.client.post(f"/admin/functions/{function}", json=payload, headers=MK)


def test_admin_invoke_queue_trigger(host: RunningHost) -> None:
    body = f"queue-{uuid.uuid4()}"
    response = _invoke(host, "record_queue", {"input": body})
    assert response.status_code == 202
    assert response.content == b""
    (recorded,) = host.wait_for_records(lambda r: r.get("body") == body)
    assert recorded["kind"] == "QueueMessage"
    assert recorded["dequeue_count"] == 1
    assert uuid.UUID(recorded["id"])
    assert recorded["insertion_time"].endswith("+00:00")
    assert recorded["pop_receipt"]
    log = host.wait_for_log("binding=forward")
    assert "output binding set; the dev host does not deliver it function=record_queue" in log


def test_admin_invoke_timer_trigger(host: RunningHost) -> None:
    before = len([r for r in host.records() if r["function"] == "record_timer"])
    assert _invoke(host, "record_timer", {"input": ""}).status_code == 202
    timers = host.wait_for_records(lambda r: r["function"] == "record_timer", count=before + 1)
    assert len(timers) == before + 1
    assert timers[-1] == {"function": "record_timer", "kind": "TimerRequest", "past_due": False}


def test_admin_invoke_event_hub_trigger_many(host: RunningHost) -> None:
    body = json.dumps({"deviceId": "dev-1", "n": str(uuid.uuid4())})
    assert _invoke(host, "record_hub", {"input": body}).status_code == 202
    (recorded,) = host.wait_for_records(lambda r: r.get("bodies") == [body])
    assert recorded["is_list"] is True
    assert recorded["kinds"] == ["EventHubEvent"]


def test_admin_invoke_event_grid_trigger(host: RunningHost) -> None:
    event_id = f"admin-{uuid.uuid4()}"
    assert _invoke(host, "record_event", {"input": json.dumps(_event(event_id))}).status_code == 202
    (recorded,) = host.wait_for_records(lambda r: r.get("id") == event_id)
    assert recorded["kind"] == "EventGridEvent"
    assert recorded["event_time"] == "2024-05-01T10:00:00.123456+00:00"


def test_admin_invoke_errors(host: RunningHost) -> None:
    assert _invoke(host, "no_such_function", {"input": ""}).status_code == 404
    http_function = _invoke(host, "echo", {"input": ""})
    assert http_function.status_code == 400
    assert "HTTP-triggered" in http_function.json()["detail"]
    assert _invoke(host, "record_event", {"input": "not json"}).status_code == 400
    unauthorized = host.client.post(
        "/admin/functions/record_queue", json={"input": "x"}, headers=FK
    )
    assert unauthorized.status_code == 401


# --- defaults: empty routePrefix, no keys, default settings file ------------------------------


def test_empty_route_prefix_serves_routes_at_the_root(bare_host: RunningHost) -> None:
    response = bare_host.client.get("/hello/World")
    assert response.status_code == 201, "no key needed: Core Tools does not enforce keys"
    assert response.text == "hello World"
    assert bare_host.client.get("/api/hello/World").status_code == 404
    assert bare_host.client.get("/admin-only").text == "admin ok"


def test_default_paths_and_admin_invoke_without_keys(bare_host: RunningHost) -> None:
    status = bare_host.client.get("/admin/host/status")
    assert status.status_code == 200
    response = bare_host.client.post("/admin/functions/record_timer", json={"input": ""})
    assert response.status_code == 202
    timers = bare_host.wait_for_records(lambda r: r["function"] == "record_timer")
    assert timers, "the record file came from <script-root>/local.settings.json"
    directory = bare_host.client.get("/items/1").json()["function_directory"]
    assert directory == str(bare_host.record_file.parent / "project")


def test_function_key_only_guards_http_triggers(function_key_host: RunningHost) -> None:
    client = function_key_host.client
    assert client.get("/v1/hello/World").status_code == 401
    assert client.get("/v1/hello/World", headers=FK).status_code == 201
    assert client.get("/v1/admin-only", headers=FK).status_code == 401, "needs a master key"
    assert client.get("/v1/public").status_code == 200
    assert client.get("/api/public").status_code == 404


def test_log_level_from_environment(function_key_host: RunningHost) -> None:
    function_key_host.client.get("/v1/public", params={"marker": "level-check"})
    log = function_key_host.wait_for_log("marker=level-check")
    assert "WARNING sample: public route called marker=level-check" in log
    assert "Executing 'Functions.public'" not in log, "INFO is below DEVSTACK_LOG_LEVEL=warning"


def test_function_key_only_leaves_host_endpoints_open(function_key_host: RunningHost) -> None:
    client = function_key_host.client
    assert client.post("/admin/functions/record_timer", json={"input": ""}).status_code == 202
    event_id = f"open-{uuid.uuid4()}"
    response = client.post(
        EVENTGRID,
        params={"functionName": "record_event"},
        json=[_event(event_id)],
        headers={"aeg-event-type": "Notification"},
    )
    assert response.status_code == 200
    assert function_key_host.wait_for_records(lambda r: r.get("id") == event_id)
    assert function_key_host.wait_for_records(lambda r: r["function"] == "record_timer")


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    root, record_file = _script_root(tmp_path, route_prefix="api")
    child = _start(tmp_path, ["--script-root", str(root)], name="function-host-stop")
    try:
        wait_ready(child)
        response = httpx.post(f"{child.url}/admin/functions/record_timer", json={"input": ""})
        assert response.status_code == 202
        child.process.send_signal(signal.SIGTERM)
        code = child.process.wait(timeout=10)
    finally:
        stop_children([child])
    assert code in (0, -signal.SIGTERM)
    log = child.log_path.read_text() if child.log_path else ""
    assert "Host stopping" in log
    assert "Host stopped" in log
    assert record_file.exists()
