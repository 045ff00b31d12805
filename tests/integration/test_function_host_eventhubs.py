"""The dev host's Event Hub endpoint, as a real child process over real HTTP with eventhub_app."""

from __future__ import annotations

import itertools
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
FUNCTION_KEY = "eh-fn-key-41c7"
MASTER_KEY = "eh-master-key-9a2e"
MK = {"x-functions-key": MASTER_KEY}
TWIN_HUB = "twin-changes-hub"
BATCH_SIZE = 3
NAMESPACE = "iothub-ns-devstack-1234.servicebus.windows.net"
CONNECTION_STRING = f"Endpoint=sb://{NAMESPACE}/;SharedAccessKeyName=service;SharedAccessKey=x="
EVENTHUBS = "/admin/devstack/eventhubs"

MANY_METADATA_KEYS = [
    "EnqueuedTimeUtcArray",
    "OffsetArray",
    "OffsetStringArray",
    "PartitionContext",
    "PartitionKeyArray",
    "PropertiesArray",
    "SequenceNumberArray",
    "SystemPropertiesArray",
    "TriggerPartitionContext",
]
ONE_METADATA_KEYS = [
    "EnqueuedTimeUtc",
    "Offset",
    "OffsetString",
    "PartitionContext",
    "Properties",
    "SequenceNumber",
    "SystemProperties",
    "TriggerPartitionContext",
]


@dataclass
class HubHost:
    child: Child
    client: httpx.Client
    record_file: Path

    def log(self) -> str:
        assert self.child.log_path is not None
        return self.child.log_path.read_text(errors="replace")

    def records(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        lines = self.record_file.read_text().splitlines()
        return [r for r in (json.loads(line) for line in lines if line) if match(r)]

    def post(self, hub: str, events: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post(f"{EVENTHUBS}/{hub}", json={"events": events}, headers=MK)

    def wait_for_log(self, text: str) -> str:
        deadline = time.monotonic() + 5
        while text not in (log := self.log()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return log


def _project(base: Path, host_json: dict[str, Any]) -> Path:
    root = base / "project"
    root.mkdir()
    shutil.copy(APPS / "eventhub_app.py", root / "eventhub_app.py")
    (root / "host.json").write_text(json.dumps(host_json))
    return root


def _start(base: Path, root: Path, values: dict[str, str], name: str, *extra: str) -> Child:
    settings = base / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    args = ["--port", "0", "--script-root", str(root), "--app", "eventhub_app:app"]
    args += ["--settings-file", str(settings), *extra]
    return start_child(name, "devstack.function_host", args, run_dir=base, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubHost]:
    """eventhub_app with keys enforced and host.json maxEventBatchSize 3."""
    base = tmp_path_factory.mktemp("eventhub-host")
    record_file = base / "records.jsonl"
    host_json = {"version": "2.0", "extensions": {"eventHubs": {"maxEventBatchSize": BATCH_SIZE}}}
    values = {
        "EH_RECORD_FILE": str(record_file),
        "TWIN_EVENTS_HUB": TWIN_HUB,
        "TELEMETRY_CONSUMER_GROUP": "telemetry-readers",
        "IotHubEventsConnection": CONNECTION_STRING,
    }
    keys = ("--function-key", FUNCTION_KEY, "--master-key", MASTER_KEY)
    child = _start(base, _project(base, host_json), values, "eventhub-host", *keys)
    try:
        wait_ready(child)
        with httpx.Client(base_url=child.url, timeout=20) as client:
            yield HubHost(child, client, record_file)
    finally:
        stop_children([child])


def _twin_event(device_id: str, sequence: int, **fields: Any) -> dict[str, Any]:
    """A twin change notification as IoT Hub routes it to its built-in Event Hub endpoint."""
    body = {
        "version": sequence + 2,
        "properties": {
            "desired": {"telemetryInterval": 30, "$metadata": {}, "$version": sequence + 2}
        },
    }
    return {
        "body": json.dumps(body),
        "properties": {
            "hubName": "hub-us-east",
            "deviceId": device_id,
            "opType": "updateTwin",
            "iothub-message-schema": "twinChangeNotification",
            "operationTimestamp": "2026-11-26T04:59:59.9876543Z",
        },
        "systemProperties": {
            "iothub-message-source": "twinChangeEvents",
            "iothub-connection-device-id": device_id,
            "iothub-enqueuedtime": "2026-11-26T05:00:00.1234567Z",
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "message-id": f"msg-{device_id}-{sequence}",
        },
        "enqueuedTimeUtc": "2026-11-26T05:00:00.000Z",
        "sequenceNumber": sequence,
        "offset": str(sequence * 512),
        "partitionKey": None,
        **fields,
    }


def _simple(body: str, device_id: str = "dev-1") -> dict[str, Any]:
    return {"body": body, "properties": {"deviceId": device_id}}


# --- start-up ---------------------------------------------------------------------------------


def test_function_list_shows_the_event_hub_endpoint(host: HubHost) -> None:
    log = host.wait_for_log("unresolved_hub")
    url = host.child.url
    assert f"twin_changes: eventHubTrigger POST {url}{EVENTHUBS}/{TWIN_HUB}\n" in log
    assert f"single_events: eventHubTrigger POST {url}{EVENTHUBS}/Device-Telemetry\n" in log


def test_startup_warns_about_connections_settings_and_annotations(host: HubHost) -> None:
    log = host.wait_for_log("unresolved_hub")
    warning = next(line for line in log.splitlines() if "MissingEventHubConnection" in line)
    assert " WARNING " in warning
    assert "names no app setting" in warning
    assert "function=missing_connection" in warning
    assert "Error indexing method 'Functions.unresolved_hub': '%NOT_DEFINED_HUB%' does not" in log
    load_error = next(line for line in log.splitlines() if "function=pep585_batch" in line)
    assert " ERROR " in load_error
    assert "invalid non-type annotation" in load_error
    assert "function=twin_changes" not in log.split("Functions:")[0], "its connection is defined"


@pytest.mark.parametrize(
    ("host_json", "app_edit", "expected"),
    [
        (
            {"extensions": {"eventHubs": {"maxEventBatchSize": 0}}},
            None,
            "extensions.eventHubs.maxEventBatchSize must be a positive integer",
        ),
        (
            {},
            ('delay_interval="00:00:01"', 'delay_interval="1s"'),
            "retry delay_interval must look like HH:MM:SS",
        ),
    ],
    ids=["batch-size", "retry-interval"],
)
def test_startup_failure_exits_1_with_the_reason(
    tmp_path: Path, host_json: dict[str, Any], app_edit: tuple[str, str] | None, expected: str
) -> None:
    root = _project(tmp_path, {"version": "2.0", **host_json})
    if app_edit is not None:
        source = (root / "eventhub_app.py").read_text()
        assert app_edit[0] in source
        (root / "eventhub_app.py").write_text(source.replace(*app_edit))
    values = {"EH_RECORD_FILE": str(tmp_path / "r.jsonl"), "TWIN_EVENTS_HUB": TWIN_HUB}
    child = _start(tmp_path, root, values, "eventhub-bad")
    try:
        assert child.process.wait(timeout=20) == 1
    finally:
        stop_children([child])
    output = child.log_path.read_text() if child.log_path else ""
    assert expected in output


# --- delivery ---------------------------------------------------------------------------------


def test_cardinality_many_is_batched_by_max_event_batch_size(host: HubHost) -> None:
    run = uuid.uuid4().hex[:8]
    events = [_simple(f"{run}-{n}") for n in range(7)]
    response = host.post(TWIN_HUB, events)
    assert response.status_code == 200
    assert response.json() == {
        "invocations": 3,
        "failed": 0,
        "attempts": 3,
        "functions": ["twin_changes"],
    }
    recorded = host.records(lambda r: r.get("body", "").startswith(f"{run}-"))
    assert [r["body"] for r in recorded] == [f"{run}-{n}" for n in range(7)], "in order"
    batches: dict[str, list[str]] = {}
    for r in recorded:
        batches.setdefault(r["invocation_id"], []).append(r["body"])
    assert [len(b) for b in batches.values()] == [3, 3, 1]
    assert all(r["is_list"] and r["kind"] == "EventHubEvent" for r in recorded)
    sequence_numbers = [r["sequence_number"] for r in recorded]
    assert sequence_numbers == list(range(sequence_numbers[0], sequence_numbers[0] + 7))
    log = host.wait_for_log(f"POST {EVENTHUBS}/{TWIN_HUB} 200")
    assert log.count("Executing 'Functions.twin_changes' (Reason='(null)'") >= 3
    assert "Trigger Details: PartitionId: 0, Offset: " in log
    assert f"POST {EVENTHUBS}/{TWIN_HUB} 200" in log, "access log line"


def test_twin_change_notification_reaches_the_function_faithfully(host: HubHost) -> None:
    device_id = f"sensor-{uuid.uuid4().hex[:8]}"
    sent = _twin_event(device_id, 42)
    response = host.post(TWIN_HUB, [sent])
    assert response.status_code == 200
    assert response.json()["invocations"] == 1
    (recorded,) = host.records(
        lambda r: r.get("iothub_metadata", {}).get("connection-device-id") == device_id
    )
    assert recorded["body"] == sent["body"]
    assert recorded["iothub_metadata"] == {
        "message-source": "twinChangeEvents",
        "connection-device-id": device_id,
        "enqueuedtime": "2026-11-26T05:00:00.1234567Z",
    }
    assert recorded["properties"] == sent["properties"]
    system = recorded["system_properties"]
    assert {k: system[k] for k in sent["systemProperties"]} == sent["systemProperties"]
    assert system["SequenceNumber"] == 42
    assert system["Offset"] == 42 * 512
    assert system["OffsetString"] == str(42 * 512)
    assert system["PartitionKey"] is None
    assert system["EnqueuedTimeUtc"] == "2026-11-26T05:00:00"
    assert system["x-opt-enqueued-time"] == "2026-11-26T05:00:00Z"
    assert recorded["metadata_keys"] == MANY_METADATA_KEYS
    # The extension binds EnqueuedTime.DateTime (kind Unspecified): a naive UTC datetime.
    assert recorded["enqueued_time"] == "2026-11-26T05:00:00"
    assert recorded["enqueued_tz"] is None
    assert recorded["sequence_number"] == 42
    assert recorded["offset"] == 42 * 512, "cardinality many decodes Offset as int"
    assert recorded["partition_key"] is None


def test_cardinality_one_and_case_insensitive_hub_name(host: HubHost) -> None:
    run = uuid.uuid4().hex[:8]
    sent = [
        _twin_event(
            f"{run}-a", 7, partitionKey="pk-a", enqueuedTimeUtc="2026-11-26T06:00:00+01:00"
        ),
        _twin_event(f"{run}-b", 8),
    ]
    response = host.post("device-TELEMETRY", sent)
    assert response.status_code == 200
    assert response.json() == {
        "invocations": 2,
        "failed": 0,
        "attempts": 2,
        "functions": ["single_events"],
    }
    recorded = host.records(
        lambda r: (
            r["function"] == "single_events"
            and r["iothub_metadata"].get("connection-device-id", "").startswith(run)
        )
    )
    assert [r["sequence_number"] for r in recorded] == [7, 8]
    assert len({r["invocation_id"] for r in recorded}) == 2, "one invocation per event"
    first = recorded[0]
    assert first["is_list"] is False
    assert first["metadata_keys"] == sorted([*ONE_METADATA_KEYS, "PartitionKey"])
    assert recorded[1]["metadata_keys"] == ONE_METADATA_KEYS, "null PartitionKey is left out"
    assert first["properties"] == sent[0]["properties"]
    assert first["iothub_metadata"]["connection-device-id"] == f"{run}-a"
    assert first["partition_key"] == "pk-a"
    assert first["offset"] == str(7 * 512)
    assert first["offset_type"] == "str"
    assert first["enqueued_time"] == "2026-11-26T05:00:00", "converted to UTC"
    assert first["partition_context"] == {
        "FullyQualifiedNamespace": NAMESPACE,
        "EventHubName": "Device-Telemetry",
        "ConsumerGroup": "telemetry-readers",
        "PartitionId": "0",
    }


def test_setting_reference_is_resolved_not_matched_literally(host: HubHost) -> None:
    for name in ("%25TWIN_EVENTS_HUB%25", "TWIN_EVENTS_HUB", "%25NOT_DEFINED_HUB%25"):
        response = host.post(name, [_simple("nobody")])
        assert response.status_code == 404, name
    assert host.post(TWIN_HUB.upper(), [_simple(f"upper-{uuid.uuid4()}")]).status_code == 200


def test_unknown_event_hub_is_404_json(host: HubHost) -> None:
    response = host.post("no-such-hub", [_simple("lost")])
    assert response.status_code == 404
    problem = response.json()
    assert problem["error"] == "not found"
    assert "'no-such-hub'" in problem["detail"]
    assert TWIN_HUB in problem["eventHubs"]
    assert "%NOT_DEFINED_HUB%" not in problem["eventHubs"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[]", "body must be a JSON object"),
        (b'{"event": []}', "events must be an array"),
        (b'{"events": []}', "events must hold at least one event"),
        (b'{"events": ["x"]}', "events[0] must be an object"),
        (b'{"events": [{"body": "a"}, {"properties": {}}]}', "events[1].body must be a string"),
        (b'{"events": [{"body": {"a": 1}}]}', "events[0].body must be a string"),
        (b'{"events": [{"body": "a", "properties": []}]}', "events[0].properties must be"),
        (b'{"events": [{"body": "a", "systemProperties": 3}]}', "events[0].systemProperties"),
        (b'{"events": [{"body": "a", "enqueuedTimeUtc": "yesterday"}]}', "enqueuedTimeUtc"),
        (b'{"events": [{"body": "a", "sequenceNumber": -1}]}', "events[0].sequenceNumber"),
        (b'{"events": [{"body": "a", "sequenceNumber": true}]}', "events[0].sequenceNumber"),
        (b'{"events": [{"body": "a", "offset": 1.5}]}', "events[0].offset"),
        (b'{"events": [{"body": "a", "partitionKey": 7}]}', "events[0].partitionKey"),
    ],
)
def test_malformed_body_is_400_naming_the_field(host: HubHost, body: bytes, field: str) -> None:
    before = len(host.records(lambda r: r["function"] == "twin_changes"))
    response = host.client.post(f"{EVENTHUBS}/{TWIN_HUB}", content=body, headers=MK)
    assert response.status_code == 400
    assert response.json()["error"] == "bad request"
    assert field in response.json()["detail"]
    assert len(host.records(lambda r: r["function"] == "twin_changes")) == before


def test_failure_without_retry_policy_is_logged_and_later_events_still_arrive(
    host: HubHost,
) -> None:
    run = uuid.uuid4().hex[:8]
    events = [_simple("1", f"{run}-ok-1"), _simple("2", "fail-me"), _simple("3", f"{run}-ok-2")]
    response = host.post("picky-hub", events)
    assert response.status_code == 200
    assert response.json() == {"invocations": 3, "failed": 1, "attempts": 3, "functions": ["picky"]}
    recorded = host.records(lambda r: r["function"] == "picky" and r["device_id"].startswith(run))
    assert [r["device_id"] for r in recorded] == [f"{run}-ok-1", f"{run}-ok-2"]
    log = host.wait_for_log("no retry policy")
    assert "Executed 'Functions.picky' (Failed, Id=" in log
    assert "ValueError: refusing twin change of fail-me" in log
    assert "not redelivered" in log


def test_fixed_delay_retry_policy_is_honoured(host: HubHost) -> None:
    body = f"flaky-{uuid.uuid4()}"
    started = time.monotonic()
    response = host.post("flaky-hub", [_simple(body)])
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"invocations": 1, "failed": 0, "attempts": 3, "functions": ["flaky"]}
    attempts = host.records(lambda r: r["function"] == "flaky" and r["body"] == body)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["retry_count"] for a in attempts] == [0, 1, 2]
    assert [a["max_retry_count"] for a in attempts] == [0, 2, 2]
    assert attempts[0]["previous_error"] == ""
    assert attempts[2]["previous_error"] == f"RuntimeError: flaky attempt 2 for {body}"
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert elapsed >= 1.9, "the response waits for the retries"
    log = host.wait_for_log("Next attempt: '2'")
    assert "Waiting for `00:00:01` before retrying function execution. Next attempt: '1'." in log


def test_retry_policy_gives_up_after_max_retry_count(host: HubHost) -> None:
    run = uuid.uuid4().hex[:8]
    response = host.post("doomed-hub", [_simple(f"{run}-a"), _simple(f"{run}-b")])
    assert response.status_code == 200
    assert response.json() == {
        "invocations": 1,
        "failed": 1,
        "attempts": 3,
        "functions": ["doomed"],
    }
    attempts = host.records(lambda r: r["function"] == "doomed" and r["bodies"][0].startswith(run))
    assert [a["retry_count"] for a in attempts] == [0, 1, 2]
    assert all(a["bodies"] == [f"{run}-a", f"{run}-b"] for a in attempts), "the whole batch again"
    assert "retries exhausted after 3 attempts" in host.wait_for_log("retries exhausted")


def test_trigger_parameter_annotations_are_honoured_like_the_worker(host: HubHost) -> None:
    run = uuid.uuid4().hex[:8]
    response = host.post("typed-hub", [_simple(f"{run}-x"), _simple(f"{run}-y")])
    assert response.status_code == 200
    result = response.json()
    assert (result["invocations"], result["failed"]) == (4, 2)
    assert sorted(result["functions"]) == ["bytes_batch", "pep585_batch", "text_events"]
    texts = host.records(lambda r: r["function"] == "text_events" and r["value"].startswith(run))
    assert [(t["type"], t["value"]) for t in texts] == [("str", f"{run}-x"), ("str", f"{run}-y")]
    assert not host.records(lambda r: r["function"] in ("bytes_batch", "pep585_batch"))
    log = host.wait_for_log("cannot load the pep585_batch function")
    assert (
        "unexpected type of data received for the \"generic\" binding : 'collection_string'" in log
    )
    assert "Executed 'Functions.pep585_batch' (Failed" in log


def test_missing_connection_still_delivers(host: HubHost) -> None:
    body = f"orphan-{uuid.uuid4()}"
    response = host.post("orphan-hub", [_simple(body)])
    assert response.status_code == 200
    assert host.records(lambda r: r["function"] == "missing_connection" and r["body"] == body)


def test_concurrent_requests_are_processed_in_order_one_batch_at_a_time(host: HubHost) -> None:
    run = uuid.uuid4().hex[:8]

    def send(request: int) -> httpx.Response:
        events = [_simple(f"{run}-{request}-{n}") for n in range(4)]
        return host.post(TWIN_HUB, events)

    with ThreadPoolExecutor(max_workers=3) as pool:
        responses = list(pool.map(send, range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    recorded = host.records(lambda r: r.get("body", "").startswith(f"{run}-"))
    assert len(recorded) == 12
    for request in range(3):
        mine = [r["body"] for r in recorded if r["body"].startswith(f"{run}-{request}-")]
        assert mine == [f"{run}-{request}-{n}" for n in range(4)]
    spans: dict[str, tuple[float, float]] = {}
    for r in recorded:
        start, end = spans.get(r["invocation_id"], (r["started"], r["finished"]))
        spans[r["invocation_id"]] = (start, max(end, r["finished"]))
    assert len(spans) == 6, "4 events per request, batches of 3 and 1"
    ordered = sorted(spans.values())
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert start >= end, "batches of one function never overlap"
    sequences = [r["sequence_number"] for r in recorded]
    assert sequences == sorted(sequences), "the record order follows the stamped order"


# --- keys -------------------------------------------------------------------------------------


def test_master_key_is_required_when_keys_are_configured(host: HubHost) -> None:
    url = f"{EVENTHUBS}/{TWIN_HUB}"
    payload = {"events": [_simple(f"keys-{uuid.uuid4()}")]}
    assert host.client.post(url, json=payload).status_code == 401
    wrong = host.client.post(url, json=payload, headers={"x-functions-key": FUNCTION_KEY})
    assert wrong.status_code == 401
    assert host.client.post(url, json=payload, params={"code": MASTER_KEY}).status_code == 200
    log = host.wait_for_log(f"POST {url}?code=**** 200")
    assert MASTER_KEY not in log
