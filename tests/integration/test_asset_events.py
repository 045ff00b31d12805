"""The asset service publishes change events to Event Grid subscribers: real processes, real HTTP.

Each test starts its own asset service (a child process) pointed at subscribers served by this
process on their own thread, which answer from a script and record every request they get.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready
from tests.integration.asset_service_fixtures import (
    READ_ONLY_KEY,
    REPO_ROOT,
    WRITE_KEY,
    event_grid_args,
    start_asset_service,
)

OPENAPI_FILE = REPO_ROOT / "asset_client" / "openapi.yaml"
APPS = Path(__file__).resolve().parent / "apps"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}
EVENT_KEYS = {
    "id",
    "topic",
    "subject",
    "eventType",
    "eventTime",
    "data",
    "dataVersion",
    "metadataVersion",
}
CONTENT_FIELDS = [
    "serialNumber",
    "assetType",
    "location",
    "status",
    "deviceId",
    "provisioningStatus",
    "replacement",
    "attributes",
]
CHANGED = "AssetManagement.AssetChanged"
RETIRED = "AssetManagement.AssetRetired"
APPROVED = "AssetManagement.ReplacementApproved"


# --- a scripted Event Grid subscriber ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the subscriber does with one request: answer, drop the connection, or stall."""

    status: int = 200
    body: bytes = b""
    drop: bool = False
    hold: bool = False
    stall_seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    answer: Answer

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads(self.body)
        return events

    @property
    def delivery_count(self) -> int:
        return int(self.headers["aeg-delivery-count"])

    @property
    def acknowledged(self) -> bool:
        """Answered 2xx in time (a stalled answer comes after the sender gave up)."""
        answer = self.answer
        return not (answer.drop or answer.stall_seconds) and 200 <= answer.status < 300


@dataclass
class Subscriber:
    """A real HTTP endpoint on its own thread and event loop; answers 200 once the script ends."""

    path: str = "/api/events"
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Answer] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._released = self._call(self._new_event())
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.listen()

    @staticmethod
    async def _new_event() -> asyncio.Event:
        return asyncio.Event()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def script(self, *answers: Answer | int) -> None:
        with self._lock:
            self._script.extend(a if isinstance(a, Answer) else Answer(status=a) for a in answers)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)

    def listen(self) -> None:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

        self._server = self._call(start())
        self.port = self._server.sockets[0].getsockname()[1]

    def refuse(self) -> None:
        """Stop listening and drop open connections: every new attempt is refused."""

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        self._call(stop())
        self._server = None

    def close(self) -> None:
        self.refuse()

        async def cancel_handlers() -> None:
            current = asyncio.current_task()
            handlers = [task for task in asyncio.all_tasks() if task is not current]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self._call(cancel_handlers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        # Cancelled by close(): end quietly, asyncio logs a handler that ends cancelled.
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        with self._lock:
            answer = self._script.popleft() if self._script else Answer()
            self.received.append(Received(method, target, headers, body, answer))
        if answer.drop:
            return False
        if answer.hold:
            await self._released.wait()
        if answer.stall_seconds:
            await asyncio.sleep(answer.stall_seconds)
        writer.write(
            f"HTTP/1.1 {answer.status} Scripted\r\nContent-Length: {len(answer.body)}\r\n"
            f"Content-Type: application/json\r\n\r\n".encode()
            + answer.body
        )
        await writer.drain()
        return True

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests()
            if done(requests):
                return requests
            if time.monotonic() > deadline:
                raise AssertionError(f"subscriber did not get what was expected: {requests}")
            time.sleep(0.005)

    def delivered_events(self) -> list[dict[str, Any]]:
        """Events of acknowledged requests, in the order they arrived."""
        return [event for r in self.requests() if r.acknowledged for event in r.events]

    def wait_for_event(self, done: Callable[[dict[str, Any]], bool]) -> None:
        self.wait_for(lambda requests: any(done(e) for r in requests for e in r.events))


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    endpoint = Subscriber()
    try:
        yield endpoint
    finally:
        endpoint.close()


@contextmanager
def subscribers(count: int) -> Iterator[list[Subscriber]]:
    endpoints = [Subscriber(path=f"/hook/{n}") for n in range(count)]
    try:
        yield endpoints
    finally:
        for endpoint in endpoints:
            endpoint.close()


# --- the asset service -------------------------------------------------------------------------


@dataclass
class Service:
    child: Child
    http: httpx.Client

    def put(self, asset_id: str, **overrides: Any) -> dict[str, Any]:
        response = self.http.put(f"/assets/{asset_id}", json=asset_body(**overrides))
        assert response.status_code in (200, 201), response.text
        asset: dict[str, Any] = response.json()
        return asset

    def patch(self, asset: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        response = self.http.patch(
            f"/assets/{asset['assetId']}",
            json=patch,
            headers={**MERGE_PATCH, "if-match": f'"{asset["version"]}"'},
        )
        assert response.status_code == 200, response.text
        patched: dict[str, Any] = response.json()
        return patched

    def link(self, asset_id: str, device_id: str, **extra: Any) -> dict[str, Any]:
        body = {"deviceId": device_id, "registrationId": device_id, **extra}
        response = self.http.post(f"/assets/{asset_id}/devices", json=body)
        assert response.status_code in (200, 201), response.text
        linked: dict[str, Any] = response.json()
        return linked

    def outbox(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {} if status is None else {"status": status}
        response = self.http.get("/devstack/events", params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_outbox(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(items := self.outbox()):
            if time.monotonic() > deadline:
                raise AssertionError(f"outbox did not get there: {json.dumps(items, indent=1)}")
            time.sleep(0.005)
        return items


@contextmanager
def running_service(
    tmp_path: Path, args: Sequence[str], *, data_dir: Path | None = None, name: str = "assets"
) -> Iterator[Service]:
    child = start_asset_service(
        tmp_path / "run", data_dir or tmp_path / "data", name=name, extra_args=["--no-seed", *args]
    )
    try:
        with httpx.Client(base_url=child.url, headers={"x-api-key": WRITE_KEY}, timeout=10) as http:
            yield Service(child, http)
    finally:
        stop_children([child])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def asset_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serialNumber": unique("SN-E"),
        "assetType": "temperature-sensor",
        "location": "test/events/line-1",
        "attributes": {"model": "T-1"},
    }
    body.update(overrides)
    return body


def of_asset(events: list[dict[str, Any]], asset_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["subject"] == f"/assets/{asset_id}"]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(e["eventType"], e["data"]) for e in events]


def changed(asset: dict[str, Any], fields: list[str]) -> tuple[str, dict[str, Any]]:
    return (
        CHANGED,
        {"assetId": asset["assetId"], "version": asset["version"], "changedFields": fields},
    )


def flush(service: Service, endpoint: Subscriber) -> None:
    """Write a marker and wait for it: first deliveries keep commit order, so all before it came."""
    marker = service.put(unique("MARK"))
    endpoint.wait_for_event(lambda e: e["data"]["assetId"] == marker["assetId"])


# --- what is published -------------------------------------------------------------------------


def test_every_versioned_write_publishes_exactly_its_events(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    topic = "/subscriptions/dev/resourceGroups/rg/providers/Contoso.Assets/assetSystems/plant"
    with running_service(tmp_path, event_grid_args([subscriber.url], topic=topic)) as svc:
        asset_id = unique("EV")
        created = svc.put(asset_id)
        body = {k: created[k] for k in ("serialNumber", "assetType", "location", "attributes")}
        replaced = svc.put(asset_id, **{**body, "location": "test/moved", "attributes": {}})
        assert svc.put(asset_id, **{**body, "location": "test/moved", "attributes": {}}) == replaced
        retyped = svc.patch(replaced, {"assetType": "pressure-sensor"})
        assert svc.patch(retyped, {"assetType": "pressure-sensor"}) == retyped
        old, new = unique("old"), unique("new")
        linked = svc.link(asset_id, old)
        assert svc.link(asset_id, old) == linked
        approval = {"oldDeviceId": old, "reason": "cracked case", "approvedSerial": "SN-NEXT"}
        pending = svc.patch(linked, {"status": "pendingReplacement", "replacement": approval})
        swapped = svc.link(asset_id, new, replacementFor=old, serialNumber="SN-NEXT")
        retired = svc.patch(swapped, {"status": "retired"})
        # Refused writes commit nothing, so they publish nothing.
        duplicate = svc.http.put(
            f"/assets/{unique('EV')}", json=asset_body(serialNumber=created["serialNumber"])
        )
        assert duplicate.status_code == 409
        stale = svc.http.patch(
            f"/assets/{asset_id}", json={"location": "x"}, headers={"if-match": '"1"'}
        )
        assert stale.status_code == 412
        born_retired = svc.put(unique("EV"), status="retired")
        flush(svc, subscriber)
        delivered = subscriber.delivered_events()
        listed = svc.outbox()

    events = of_asset(delivered, asset_id)
    assert summary(events) == [
        changed(created, CONTENT_FIELDS),
        changed(replaced, ["location", "attributes"]),
        changed(retyped, ["assetType"]),
        changed(linked, ["status", "deviceId", "provisioningStatus"]),
        changed(pending, ["status", "replacement"]),
        (
            APPROVED,
            {
                "assetId": asset_id,
                "version": pending["version"],
                "oldDeviceId": old,
                "reason": "cracked case",
                "approvedSerial": "SN-NEXT",
                "approvedThumbprint": None,
            },
        ),
        changed(swapped, ["status", "deviceId", "replacement"]),
        changed(retired, ["status"]),
        (RETIRED, {"assetId": asset_id, "version": retired["version"]}),
    ]
    assert [e["eventTime"] for e in events] == [
        a["updatedAt"]
        for a in (created, replaced, retyped, linked, pending, pending, swapped, retired, retired)
    ]
    for event in events:
        assert set(event) == EVENT_KEYS
        assert uuid.UUID(event["id"]).version == 4
        assert event["topic"] == topic
        assert event["dataVersion"] == "1.0"
        assert event["metadataVersion"] == "1"
        assert event["eventTime"].endswith("Z")
        datetime.fromisoformat(event["eventTime"])
    assert len({e["id"] for e in delivered}) == len(delivered), "event ids are unique"
    assert summary(of_asset(delivered, born_retired["assetId"])) == [
        changed(born_retired, CONTENT_FIELDS),
        (RETIRED, {"assetId": born_retired["assetId"], "version": 1}),
    ]
    # The outbox holds exactly the published events, each delivered to the one subscription.
    assert [item["event"] for item in listed] == delivered
    assert all([d["status"] for d in item["deliveries"]] == ["delivered"] for item in listed)
    assert_documented(events)


def assert_documented(events: list[dict[str, Any]]) -> None:
    """asset_client/openapi.yaml describes these events as they are."""
    yaml = importlib.import_module("yaml")
    document = yaml.safe_load(OPENAPI_FILE.read_text())
    schemas = document["components"]["schemas"]
    envelope = schemas["AssetEvent"]
    assert set(envelope["required"]) == EVENT_KEYS == set(envelope["properties"])
    data_schemas = {
        CHANGED: schemas["AssetChangedData"],
        RETIRED: schemas["AssetRetiredData"],
        APPROVED: schemas["ReplacementApprovedData"],
    }
    assert set(envelope["properties"]["eventType"]["enum"]) == set(data_schemas)
    for event in events:
        schema = data_schemas[event["eventType"]]
        assert set(schema["required"]) == set(event["data"]) == set(schema["properties"])
    assert schemas["ChangedField"]["enum"] == CONTENT_FIELDS
    webhook = document["webhooks"]["assetEvents"]["post"]
    body = webhook["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    assert body["items"] == {"$ref": "#/components/schemas/AssetEvent"}


def test_a_delivery_is_an_event_grid_notification(tmp_path: Path) -> None:
    with subscribers(2) as (named, plain):
        named.path = "/runtime/webhooks/eventgrid?functionName=sync_twin&code=secret"
        plain.script(Answer(200, b"not json at all"), Answer(202, b"[1, 2]"), Answer(204))
        args = event_grid_args([named.url, plain.url], key="sas-key-123")
        with running_service(tmp_path, args) as svc:
            assets = [svc.put(unique("HDR")) for _ in range(3)]
            for endpoint in (named, plain):
                endpoint.wait_for(lambda rs: sum(len(r.events) for r in rs) >= 3)
            time.sleep(0.1)  # ample for a retry at this scale, had any answer been refused
            items = svc.outbox()

    for endpoint, name in ((named, "SYNC_TWIN"), (plain, "SUBSCRIPTION-2")):
        requests = endpoint.requests()
        assert [e["subject"] for r in requests for e in r.events] == [
            f"/assets/{a['assetId']}" for a in assets
        ], "each event once, none retried"
        for request in requests:
            assert request.method == "POST"
            assert request.target == endpoint.path
            assert isinstance(json.loads(request.body), list)
            assert request.headers["content-type"] == "application/json"
            assert request.headers["aeg-event-type"] == "Notification"
            assert request.headers["aeg-delivery-count"] == "0"
            assert request.headers["aeg-subscription-name"] == name
            assert request.headers["aeg-data-version"] == "1.0"
            assert request.headers["aeg-metadata-version"] == "1"
            assert request.headers["aeg-sas-key"] == "sas-key-123"
    for item in items:
        deliveries = item["deliveries"]
        assert [d["subscription"] for d in deliveries] == ["SUBSCRIPTION-2", "SYNC_TWIN"]
        assert {d["status"] for d in deliveries} == {"delivered"}
        assert {d["attempts"] for d in deliveries} == {1}
        assert "secret" not in json.dumps(deliveries), "keys in endpoints are masked"


def test_cloudevents_carry_the_trace_context_of_the_write_that_caused_them(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    args = [*event_grid_args([subscriber.url]), "--event-schema", "cloudevents"]
    with running_service(tmp_path, args) as svc:
        traced_id, untraced_id, forged_id = unique("CE"), unique("CE"), unique("CE")
        response = svc.http.put(
            f"/assets/{traced_id}",
            json=asset_body(),
            headers={"traceparent": traceparent, "tracestate": "vendor=1"},
        )
        assert response.status_code == 201, response.text
        svc.put(untraced_id)
        response = svc.http.put(
            f"/assets/{forged_id}",
            json=asset_body(),
            headers={"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 201, response.text
        subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) >= 3)
    requests = subscriber.requests()
    assert {r.headers["content-type"] for r in requests} == {
        "application/cloudevents-batch+json; charset=utf-8"
    }
    assert all("aeg-data-version" not in r.headers for r in requests)
    by_subject = {e["subject"]: e for r in requests for e in r.events}
    traced = by_subject[f"/assets/{traced_id}"]
    assert set(traced) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
        "traceparent",
        "tracestate",
    }
    assert (traced["specversion"], traced["type"]) == ("1.0", CHANGED)
    assert (traced["traceparent"], traced["tracestate"]) == (traceparent, "vendor=1")
    assert traced["data"]["assetId"] == traced_id
    # Without a valid one (none, or the all-zero trace id W3C forbids), each write starts a trace.
    fresh = [by_subject[f"/assets/{a}"]["traceparent"] for a in (untraced_id, forged_id)]
    for value in fresh:
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", value), value
        assert value.split("-")[1] not in ("0" * 32, traceparent.split("-")[1])
    assert fresh[0].split("-")[1] != fresh[1].split("-")[1]
    assert "tracestate" not in by_subject[f"/assets/{untraced_id}"]


def test_events_wait_in_batches_of_at_most_ten(tmp_path: Path, subscriber: Subscriber) -> None:
    subscriber.script(Answer(hold=True))
    with running_service(tmp_path, event_grid_args([subscriber.url])) as svc:
        first = svc.put(unique("B"))
        subscriber.wait_for(lambda rs: len(rs) == 1)
        rest = [svc.put(unique("B")) for _ in range(24)]
        subscriber.release()
        requests = subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) >= 25)

    assert [len(r.events) for r in requests] == [1, 10, 10, 4]
    assert [e["data"]["assetId"] for r in requests for e in r.events] == [
        a["assetId"] for a in (first, *rest)
    ]
    assert {r.delivery_count for r in requests} == {0}


def test_first_deliveries_follow_commit_order(tmp_path: Path, subscriber: Subscriber) -> None:
    subscriber.script(503, 200, 500)
    with running_service(tmp_path, event_grid_args([subscriber.url])) as svc:
        assets = [svc.put(unique("ORD")) for _ in range(6)]

        def edit(asset: dict[str, Any]) -> None:
            for n in range(5):
                asset = svc.patch(asset, {"location": f"test/order/{n}"})

        with ThreadPoolExecutor(len(assets)) as pool:
            list(pool.map(edit, assets))
        total = 6 + 6 * 5
        svc.wait_outbox(
            lambda items: (
                len(items) == total
                and all(d["status"] == "delivered" for i in items for d in i["deliveries"])
            )
        )
        commit_order = [item["id"] for item in svc.outbox()]
        requests = subscriber.requests()

    first = [e["id"] for r in requests if r.delivery_count == 0 for e in r.events]
    assert first == commit_order
    retried = [e["id"] for r in requests if r.delivery_count == 1 for e in r.events]
    assert retried, "the failed first batches were sent again"
    assert set(retried) <= set(commit_order)
    for asset in assets:
        versions = [
            e["data"]["version"]
            for r in requests
            if r.delivery_count == 0
            for e in r.events
            if e["data"]["assetId"] == asset["assetId"]
        ]
        assert versions == [1, 2, 3, 4, 5, 6]


# --- retries and dead letters ------------------------------------------------------------------


def test_refused_5xx_429_and_dropped_connections_are_retried(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    subscriber.refuse()
    args = event_grid_args([subscriber.url], retry_scale=0.0005)
    with running_service(tmp_path, args) as svc:
        asset = svc.put(unique("RETRY"))
        refused = svc.wait_outbox(
            lambda items: bool(items) and items[0]["deliveries"][0]["attempts"] >= 1
        )
        assert refused[0]["deliveries"][0]["lastError"] == "connection refused"
        assert refused[0]["deliveries"][0]["status"] == "pending"
        subscriber.script(500, 503, 429, Answer(drop=True), 200)
        subscriber.listen()
        # How many refusals came first depends on timing; each step after them waits longer.
        requests = subscriber.wait_for(lambda rs: len(rs) == 5, timeout=30)
        (item,) = svc.wait_outbox(lambda items: items[0]["deliveries"][0]["status"] == "delivered")
        time.sleep(0.1)
        assert len(subscriber.requests()) == 5, "nothing is sent once delivered"

    counts = [r.delivery_count for r in requests]
    assert counts[0] >= 1, "the refused attempts counted"
    assert counts == list(range(counts[0], counts[0] + 5))
    assert {e["data"]["assetId"] for r in requests for e in r.events} == {asset["assetId"]}
    assert len({r.body for r in requests}) == 1, "the same event, byte for byte"
    delivery = item["deliveries"][0]
    assert delivery["attempts"] == counts[-1] + 1
    assert delivery["lastHttpStatus"] == 200
    assert delivery["lastError"].startswith(("ServerDisconnectedError", "ClientOSError"))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_answers_event_grid_never_retries_are_dead_lettered(
    tmp_path: Path, subscriber: Subscriber, status: int
) -> None:
    subscriber.script(status)
    with subscribers(1) as (retried,):
        retried.script(408)
        args = event_grid_args([subscriber.url, retried.url])
        with running_service(tmp_path, args) as svc:
            asset = svc.put(unique("DL"))
            retried.wait_for(lambda rs: len(rs) == 2)
            (item,) = svc.wait_outbox(
                lambda items: (
                    bool(items) and all(d["status"] != "pending" for d in items[0]["deliveries"])
                )
            )
            time.sleep(0.1)  # a retry would come within 10 ms at this scale
            dead = svc.outbox("deadLettered")
            assert svc.outbox("pending") == []
            log = svc.child.log_path.read_text() if svc.child.log_path else ""

    assert len(subscriber.requests()) == 1, f"{status} must not be retried"
    assert [r.delivery_count for r in retried.requests()] == [0, 1], "408 is retried"
    assert [i["id"] for i in dead] == [item["id"]]
    assert item["event"]["data"]["assetId"] == asset["assetId"]
    by_name = {d["subscription"]: d for d in item["deliveries"]}
    assert by_name["SUBSCRIPTION-2"]["status"] == "delivered"
    letter = by_name["SUBSCRIPTION-1"]
    assert letter["status"] == "deadLettered"
    assert letter["deadLetterReason"] == "NonRetryableStatusCode"
    assert letter["lastHttpStatus"] == status
    assert letter["lastError"].startswith(f"HTTP {status}")
    assert letter["attempts"] == 1
    assert letter["deadLetteredAt"].endswith("Z")
    assert f"dead-lettered event {item['id']}" in log


def test_a_failing_subscriber_does_not_hold_back_a_healthy_one(tmp_path: Path) -> None:
    with subscribers(2) as (failing, healthy):
        failing.script(Answer(stall_seconds=5), *[503] * 3)
        args = event_grid_args([failing.url, healthy.url], delivery_timeout=0.3)
        with running_service(tmp_path, args) as svc:
            assets = [svc.put(unique("ISO")) for _ in range(5)]
            healthy.wait_for(lambda rs: sum(len(r.events) for r in rs) == 5, timeout=2)
            stuck = svc.outbox()
            failing.wait_for(lambda rs: len(rs) >= 4)
            svc.wait_outbox(
                lambda items: all(
                    d["status"] == "delivered" for i in items for d in i["deliveries"]
                )
            )
            sent = [e["data"]["assetId"] for e in failing.delivered_events()]

    assert sorted(sent) == sorted(a["assetId"] for a in assets)
    first = {d["subscription"]: d for d in stuck[0]["deliveries"]}
    assert first["SUBSCRIPTION-2"]["status"] == "delivered"
    assert first["SUBSCRIPTION-1"]["status"] == "pending"
    counts = [r.delivery_count for r in failing.requests()]
    assert counts[0] == 0
    assert max(counts) >= 2, "the failing subscriber's events were retried"
    assert [e["data"]["assetId"] for e in healthy.delivered_events()] == [
        a["assetId"] for a in assets
    ]


def test_timeouts_are_retried_and_recorded(tmp_path: Path, subscriber: Subscriber) -> None:
    subscriber.script(Answer(stall_seconds=2))
    args = event_grid_args([subscriber.url], delivery_timeout=0.2)
    with running_service(tmp_path, args) as svc:
        svc.put(unique("SLOW"))
        subscriber.wait_for(lambda rs: len(rs) == 2)
        (item,) = svc.wait_outbox(lambda items: items[0]["deliveries"][0]["status"] == "delivered")
    assert item["deliveries"][0]["lastError"] == "no response within 0.2 s"
    assert item["deliveries"][0]["attempts"] == 2


# --- durability and duplicates -----------------------------------------------------------------


def test_the_outbox_survives_a_crash_while_the_subscriber_is_down(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    subscriber.refuse()
    data_dir = tmp_path / "data"
    args = event_grid_args([subscriber.url])
    with running_service(tmp_path, args, data_dir=data_dir, name="before") as svc:
        written = [svc.put(unique("CRASH")) for _ in range(3)]
        svc.wait_outbox(lambda items: all(i["deliveries"][0]["attempts"] >= 1 for i in items))
        before = {item["id"]: item["deliveries"][0]["attempts"] for item in svc.outbox()}
        svc.child.process.kill()  # SIGKILL: no shutdown code runs
        svc.child.process.wait()
    assert len(before) == 3

    subscriber.listen()
    with running_service(tmp_path, args, data_dir=data_dir, name="after") as svc:
        subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) >= 3)
        items = svc.wait_outbox(
            lambda items: all(i["deliveries"][0]["status"] == "delivered" for i in items)
        )

    # Retries run on each event's own schedule, so the order may differ: Event Grid's contract.
    assert sorted(e["id"] for e in subscriber.delivered_events()) == sorted(before)
    assert sorted(e["data"]["assetId"] for e in subscriber.delivered_events()) == sorted(
        a["assetId"] for a in written
    )
    for item in items:
        assert item["deliveries"][0]["attempts"] > before[item["id"]]
    assert all(r.delivery_count >= 1 for r in subscriber.requests())


def test_redeliver_sends_delivered_events_again(tmp_path: Path, subscriber: Subscriber) -> None:
    with running_service(tmp_path, event_grid_args([subscriber.url])) as svc:
        one, two = svc.put(unique("DUP")), svc.put(unique("DUP"))
        subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) == 2)
        ids = [item["id"] for item in svc.outbox("delivered")]
        again = svc.http.post("/devstack/events/redeliver", json={"ids": [ids[1]]})
        assert again.status_code == 200, again.text
        assert again.json() == {"redelivered": [ids[1]]}
        subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) == 3)
        everything = svc.http.post("/devstack/events/redeliver")
        assert everything.json() == {"redelivered": ids}
        subscriber.wait_for(lambda rs: sum(len(r.events) for r in rs) == 5)

        unknown = svc.http.post("/devstack/events/redeliver", json={"ids": ["no-such-event"]})
        bad_status = svc.http.get("/devstack/events", params={"status": "lost"})
        bad_body = svc.http.post("/devstack/events/redeliver", json={"ids": "all"})
        reader = {"x-api-key": READ_ONLY_KEY}
        read_only = svc.http.post("/devstack/events/redeliver", headers=reader)
        readable = svc.http.get("/devstack/events", headers=reader)
        anonymous = httpx.get(f"{svc.child.url}/devstack/events")

    received = [(e["id"], r.delivery_count) for r in subscriber.requests() for e in r.events]
    assert received == [(ids[0], 0), (ids[1], 0), (ids[1], 1), (ids[0], 1), (ids[1], 2)]
    assert [e["data"]["assetId"] for e in subscriber.delivered_events()[:2]] == [
        one["assetId"],
        two["assetId"],
    ]
    assert unknown.status_code == 404
    assert "no-such-event" in unknown.json()["detail"]
    assert bad_status.status_code == 400
    assert bad_status.json()["field"] == "status"
    assert bad_body.status_code == 400
    assert read_only.status_code == 403
    assert readable.status_code == 200
    assert anonymous.status_code == 401


def test_without_subscribers_events_are_kept_but_not_sent(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    subscriber.refuse()
    data_dir = tmp_path / "data"
    with running_service(tmp_path, event_grid_args([subscriber.url]), data_dir=data_dir) as svc:
        earlier = svc.put(unique("QUIET"))
    with running_service(tmp_path, [], data_dir=data_dir) as svc:
        later = svc.put(unique("QUIET"))
        time.sleep(0.1)
        items = svc.outbox()
    assert [item["event"]["data"] for item in items] == [
        {"assetId": asset["assetId"], "version": 1, "changedFields": CONTENT_FIELDS}
        for asset in (earlier, later)
    ]
    (dropped,) = items[0]["deliveries"]
    assert dropped["status"] == "pending"
    assert dropped["subscriptionActive"] is False
    assert items[1]["deliveries"] == []
    assert subscriber.requests() == []


# --- the real dev functions host -----------------------------------------------------------------


def test_the_dev_functions_host_receives_asset_changed_events(tmp_path: Path) -> None:
    record_file = tmp_path / "records.jsonl"
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"SAMPLE_RECORD_FILE": str(record_file)}})
    )
    host = start_child(
        "function-host",
        "devstack.function_host",
        ["--port", "0", "--script-root", str(APPS), "--app", "sample_app:app"]
        + ["--settings-file", str(settings)],
        run_dir=tmp_path / "run",
        cwd=REPO_ROOT,
    )
    try:
        wait_ready(host)
        webhook = f"{host.url}/runtime/webhooks/eventgrid?functionName=record_event"
        with running_service(tmp_path, event_grid_args([webhook])) as svc:
            asset = svc.put(unique("FN"))
            moved = svc.patch(asset, {"location": "test/functions/line-9"})
            svc.wait_outbox(
                lambda items: (
                    len(items) == 2
                    and all(d["status"] == "delivered" for i in items for d in i["deliveries"])
                )
            )
            ids = [item["id"] for item in svc.outbox()]
    finally:
        stop_children([host])

    records = [json.loads(line) for line in record_file.read_text().splitlines() if line]
    received = [r for r in records if r.get("function") == "record_event"]
    assert [r["id"] for r in received] == ids
    latest = received[-1]
    assert latest == {
        "function": "record_event",
        "kind": "EventGridEvent",
        "invocation_id": latest["invocation_id"],
        "id": ids[1],
        "topic": "/devstack/assetManagement",
        "subject": f"/assets/{asset['assetId']}",
        "event_type": CHANGED,
        "event_time": datetime.fromisoformat(moved["updatedAt"]).isoformat(),
        "data": {"assetId": asset["assetId"], "version": 2, "changedFields": ["location"]},
        "data_version": "1.0",
    }
