"""Bytes in, status + problem+json out: bad input, hostile input, and the DPS status table."""

import json
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from allocation.contract import MAX_BODY_BYTES
from allocation.http_endpoint import answer_allocation
from allocation.service import AllocationService
from asset_client import (
    AssetAccessDenied,
    AssetCircuitOpen,
    AssetConflict,
    AssetUnavailable,
)
from devstack.dps_requests import allocation_request
from observability import allocation_metrics as metric
from observability import trace_attributes as attr
from observability.allocation_metrics import AllocationMetrics
from policies import TrustPolicy
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import RecordingOutbox

EAST = "hub-us-east.azure-devices.net"


def valid_body(registration_id="sensor-1001", **kwargs):
    return allocation_request(registration_id, **kwargs)


async def answer(
    body, repo=None, policy=None, request_id="req-42", recorded=None, tracer=None, metrics=None
):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    service = AllocationService(
        assets=repo or FakeAssetRepository(make_asset(device_id=None)),
        policy=policy,
        asset_api_public_url="http://assets",
        outbox=(recorded or RecordingOutbox()).outbox,
    )
    return await answer_allocation(
        raw, request_id=request_id, service=service, tracer=tracer, metrics=metrics
    )


def problem(result):
    assert result.content_type == "application/problem+json"
    body = json.loads(result.body)
    assert body["status"] == result.status
    assert body["requestId"] == "req-42"
    return body


@pytest.fixture
def known(ca):
    """A request whose certificate info names the seeded serial."""
    return valid_body(x509={"subjectName": "CN=sensor-1001, SERIALNUMBER=SN-1001"})


async def test_a_valid_request_answers_200_with_a_hub(known, demo_policy):
    result = await answer(known, policy=demo_policy)
    assert result.status == 200
    assert result.content_type == "application/json"
    assert result.headers["x-request-id"] == "req-42"
    assert json.loads(result.body)["iotHubHostName"] == EAST


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("deviceRuntimeContext"), "deviceRuntimeContext"),
        (lambda b: b["deviceRuntimeContext"].pop("registrationId"), "registrationId"),
        (lambda b: b.update(linkedHubs=[]), "linkedHubs"),
        (lambda b: b.update(linkedHubs="hub-us-east.azure-devices.net"), "linkedHubs"),
        (lambda b: b.update(linkedHubs=["not a host"]), "linkedHubs[0]"),
        (lambda b: b.pop("linkedHubs"), "linkedHubs"),
        (lambda b: b["deviceRuntimeContext"].update(registrationId=42), "registrationId"),
        (lambda b: b["deviceRuntimeContext"].update(payload="text"), "payload"),
        (lambda b: b["deviceRuntimeContext"].update(x509="cert"), "x509"),
        (lambda b: b["deviceRuntimeContext"].update(tpm={"endorsementKey": "k"}), "x509 and tpm"),
        (lambda b: b.pop("enrollmentGroup"), "enrollmentGroup or individualEnrollment"),
        (lambda b: b.update(individualEnrollment={}), "enrollmentGroup or individualEnrollment"),
        (
            lambda b: b["enrollmentGroup"]["reprovisionPolicy"].update(updateHubAssignment="yes"),
            "enrollmentGroup.reprovisionPolicy.updateHubAssignment",
        ),
        (
            lambda b: b["deviceRuntimeContext"].update(currentIotHubHostName="evil host/"),
            "currentIotHubHostName",
        ),
    ],
)
async def test_malformed_requests_are_400_naming_the_field(known, demo_policy, mutate, field):
    mutate(known)
    result = await answer(known, policy=demo_policy)
    assert result.status == 400
    body = problem(result)
    assert body["type"].endswith("invalid-request")
    assert field in body["detail"]


async def test_field_errors_are_listed_one_by_one(known, demo_policy):
    known["deviceRuntimeContext"]["registrationId"] = "bad id!"
    known["linkedHubs"] = []
    body = problem(await answer(known, policy=demo_policy))
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"deviceRuntimeContext.registrationId", "linkedHubs"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b'{"a": 1', b"\xff\xfe", b"[]", b"null", b"42", b'"text"'],
)
async def test_non_json_or_non_object_bodies_are_400(raw, demo_policy):
    result = await answer(raw, policy=demo_policy)
    assert result.status == 400
    assert problem(result)["type"].endswith("invalid-request")


async def test_a_body_over_96_kb_is_413_before_parsing(demo_policy):
    result = await answer(b"{" + b" " * MAX_BODY_BYTES + b"}", policy=demo_policy)
    assert result.status == 413
    assert "96" in problem(result)["detail"] or str(MAX_BODY_BYTES) in problem(result)["detail"]


async def test_a_body_of_exactly_96_kb_is_read(known, demo_policy):
    raw = json.dumps(known).encode()
    padded = raw[:-1] + b" " * (MAX_BODY_BYTES - len(raw)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    assert (await answer(padded, policy=demo_policy)).status == 200


HOSTILE_IDS = [
    "../../assets/AST-1001",
    "sensor-1001?deviceId=x",
    "sensor-1001\r\nX-Injected: 1",
    "sensor 1001",
    "a" * 129,
    "sensor-1001\x00",
    "<script>",
    "sensör",
    "%2e%2e%2f",
]


@pytest.mark.parametrize("registration_id", HOSTILE_IDS)
async def test_hostile_registration_ids_are_refused_without_an_asset_call(
    registration_id, demo_policy
):
    repo = FakeAssetRepository(make_asset())
    body = valid_body(registration_id)
    result = await answer(body, repo=repo, policy=demo_policy)
    assert result.status == 400
    assert "deviceRuntimeContext.registrationId" in problem(result)["detail"]
    assert repo.calls == []
    # The problem never echoes the hostile input back.
    assert registration_id.encode() not in result.body or registration_id == "sensör"


@pytest.mark.parametrize(
    "subject",
    [
        "CN=sensor-1001, SERIALNUMBER=SN-1001\x00",
        "CN=sensor-1001, SERIALNUMBER=" + "9" * 200,
        "CN=sensor-1001, CN=other",
        "CN=sensor-1001, SERIALNUMBER=\\0a",
    ],
)
async def test_odd_dns_in_certificate_info_are_400(subject, demo_policy):
    repo = FakeAssetRepository(make_asset())
    body = valid_body(x509={"subjectName": subject})
    result = await answer(body, repo=repo, policy=demo_policy)
    assert result.status == 400
    assert "deviceRuntimeContext.x509.subjectName" in problem(result)["detail"]
    assert repo.calls == []


async def test_unknown_fields_from_a_newer_dps_are_tolerated(known, demo_policy):
    known["newTopLevelThing"] = {"x": 1}
    known["deviceRuntimeContext"]["somethingNew"] = True
    known["enrollmentGroup"]["capabilities"]["future"] = "yes"
    assert (await answer(known, policy=demo_policy)).status == 200


async def test_both_casings_of_current_hub_are_accepted(known, demo_policy):
    for key in ("currentIotHubHostName", "currentIoTHubHostName"):
        body = json.loads(json.dumps(known))
        body["deviceRuntimeContext"][key] = EAST
        assert (await answer(body, policy=demo_policy)).status == 200


async def test_individual_enrollments_are_accepted_and_may_name_the_device(demo_policy):
    body = valid_body(x509={"subjectName": "CN=sensor-1001, SERIALNUMBER=SN-1001"})
    body["individualEnrollment"] = {"registrationId": "sensor-1001", "deviceId": "dev-custom"}
    del body["enrollmentGroup"]
    repo = FakeAssetRepository(make_asset())
    policy = demo_policy.model_copy(update={"trust": TrustPolicy(individual_enrollments=True)})
    result = await answer(body, repo=repo, policy=policy)
    assert result.status == 200
    assert repo.links[0][1].device_id == "dev-custom"


async def test_a_policy_that_pins_groups_refuses_individual_enrollments(demo_policy):
    body = valid_body(x509={"subjectName": "CN=sensor-1001, SERIALNUMBER=SN-1001"})
    body["individualEnrollment"] = {"registrationId": "sensor-1001", "deviceId": "dev-custom"}
    del body["enrollmentGroup"]
    repo, recorded = FakeAssetRepository(make_asset()), RecordingOutbox()
    result = await answer(body, repo=repo, policy=demo_policy, recorded=recorded)
    assert result.status == 400
    assert problem(result)["type"].endswith(":untrusted-enrollment")
    assert repo.calls == []
    assert recorded.actions() == ["allocation.refused"]


class FailingRepo(FakeAssetRepository):
    def __init__(self, error):
        super().__init__()
        self.error = error

    async def find_by_device_id(self, device_id):
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AssetAccessDenied("asset API answered 401"), 502),
        (AssetConflict("changed"), 409),
        (RuntimeError("secret=hunter2 internal"), 500),
    ],
)
async def test_asset_failures_that_are_no_outage_map_to_their_status(
    known, demo_policy, error, status
):
    recorded = RecordingOutbox()
    result = await answer(known, repo=FailingRepo(error), policy=demo_policy, recorded=recorded)
    assert result.status == status
    assert recorded.reconciliation.messages == []
    body = problem(result)
    if status == 500:
        assert b"hunter2" not in result.body
        assert body["detail"] == "unexpected error; see the logs"


OUTAGES = [
    AssetUnavailable("asset API timed out"),
    AssetUnavailable("busy", retry_after=12.4, status=503),
    AssetUnavailable("boom", status=500),
    AssetCircuitOpen("asset API circuit is open", retry_after=30),
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_outage_under_fallback_onboards_with_least_privilege_and_queues_the_rest(
    known, demo_policy, error
):
    recorded = RecordingOutbox()
    result = await answer(known, repo=FailingRepo(error), policy=demo_policy, recorded=recorded)
    assert result.status == 200
    body = json.loads(result.body)
    assert body["iotHubHostName"] in (EAST, "hub-eu-west.azure-devices.net")
    tags = body["initialTwin"]["tags"]
    assert tags["provisioningState"] == "pendingReconciliation"
    assert tags["deviceRole"] == "sensor"
    assert "assetId" not in tags
    assert body["initialTwin"]["properties"]["desired"]["rolePermissions"]["role"] == "sensor"
    assert tags["pendingSince"].endswith("Z")
    [message] = recorded.reconciliation.messages
    assert message["kind"] == "allocation"
    assert message["deviceId"] == "sensor-1001"
    assert message["hub"] == body["iotHubHostName"]
    assert message["requestId"] == "req-42"
    assert message["event"]["subjectSerialNumber"] == "SN-1001"
    assert recorded.dead_letters.messages == []
    assert recorded.actions() == ["allocation.fallback"]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_outage_under_defer_is_503_with_the_policys_retry_after(known, demo_policy, error):
    policy = demo_policy.model_copy(
        update={"outage": demo_policy.outage.model_copy(update={"policy": "defer"})}
    )
    recorded = RecordingOutbox()
    result = await answer(known, repo=FailingRepo(error), policy=policy, recorded=recorded)
    assert result.status == 503
    assert result.headers["retry-after"] == str(policy.outage.retry_after_seconds)
    assert problem(result)["type"].endswith(":asset-system-unavailable")
    assert recorded.reconciliation.messages == []
    assert recorded.dead_letters.messages == []
    assert recorded.actions() == []  # a deferral is no decision yet: only its log line


async def test_a_fallback_routes_by_a_location_seen_before(known, demo_policy):
    class FlakyLater(FakeAssetRepository):
        down = False

        async def find_by_device_id(self, device_id):
            if self.down:
                raise AssetUnavailable("down")
            return await super().find_by_device_id(device_id)

    repo = FlakyLater(make_asset(location="eu-west/site-a"))
    service = AllocationService(
        assets=repo,
        policy=demo_policy,
        asset_api_public_url="http://a",
        outbox=RecordingOutbox().outbox,
    )
    first = await answer_allocation(json.dumps(known).encode(), request_id="r", service=service)
    repo.down = True
    second = await answer_allocation(json.dumps(known).encode(), request_id="r", service=service)
    body = json.loads(second.body)
    assert json.loads(first.body)["iotHubHostName"] == "hub-eu-west.azure-devices.net"
    assert body["iotHubHostName"] == "hub-eu-west.azure-devices.net"
    assert body["initialTwin"]["tags"]["hubSelection"] == "location"
    assert body["initialTwin"]["tags"]["location"] == "eu-west/site-a"


async def test_a_refusal_is_dead_lettered_with_context_and_never_replayable(demo_policy):
    body = valid_body("sensor-9999", x509={"subjectName": "CN=sensor-9999, SERIALNUMBER=SN-9999"})
    recorded = RecordingOutbox()
    result = await answer(body, policy=demo_policy, recorded=recorded)
    assert result.status == 400
    [letter] = recorded.dead_letters.messages
    assert letter["source"] == "allocation"
    assert letter["reason"] == "unknown-device"
    assert letter["registrationId"] == "sensor-9999"
    assert letter["request"]["linkedHubs"] == list(body["linkedHubs"])
    assert letter["request"]["linkedHubCount"] == len(body["linkedHubs"])
    assert letter["replayable"] is False


async def test_garbage_is_not_dead_lettered(demo_policy):
    recorded = RecordingOutbox()
    result = await answer(b"not json", policy=demo_policy, recorded=recorded)
    assert result.status == 400
    assert recorded.dead_letters.messages == []
    assert recorded.audit.entries == []


async def test_an_unknown_device_is_400_unknown_device(demo_policy):
    body = valid_body("sensor-9999", x509={"subjectName": "CN=sensor-9999, SERIALNUMBER=SN-9999"})
    result = await answer(body, policy=demo_policy)
    assert result.status == 400
    assert problem(result)["type"].endswith(":unknown-device")


async def test_a_mapped_hub_that_is_not_linked_is_spread_over_the_linked_ones(known, demo_policy):
    known["linkedHubs"] = ["hub-other.azure-devices.net"]
    result = await answer(known, policy=demo_policy)
    assert result.status == 200
    body = json.loads(result.body)
    assert body["iotHubHostName"] == "hub-other.azure-devices.net"
    assert body["initialTwin"]["tags"]["hubSelection"] == "spread"


async def test_a_retired_asset_is_409(demo_policy, known):
    repo = FakeAssetRepository(make_asset(status="retired"))
    result = await answer(known, repo=repo, policy=demo_policy)
    assert result.status == 409
    assert "retired" in problem(result)["detail"]


async def test_refusals_are_logged_with_the_device_fields_and_no_body(known, demo_policy, caplog):
    known["deviceRuntimeContext"]["x509"] = {"subjectName": "CN=someone-else, SERIALNUMBER=SN-1"}
    with caplog.at_level(logging.INFO, logger="allocation"):
        result = await answer(known, policy=demo_policy)
    assert result.status == 400
    [record] = [r for r in caplog.records if r.getMessage() == "allocation refused"]
    assert record.registrationId == "sensor-1001"
    assert record.requestId == "req-42"
    assert record.reason == "common-name-mismatch"


@pytest.fixture
def spans():
    """A tracer of the test's own (the global provider stays the no-op API's) and its spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


async def test_a_fallback_span_says_fallback_and_why(known, demo_policy, spans):
    tracer, exporter = spans
    outage = AssetUnavailable("asset API timed out")
    result = await answer(known, repo=FailingRepo(outage), policy=demo_policy, tracer=tracer)
    assert result.status == 200
    [span] = exporter.get_finished_spans()
    assert span.attributes[attr.OUTCOME] == "fallback"
    assert span.attributes[attr.REASON] == "asset API timed out"
    assert span.attributes[attr.ROLE] == "sensor"
    assert span.attributes[attr.DEVICE_ID] == "sensor-1001"
    assert attr.ASSET_ID not in span.attributes
    assert span.status.status_code == StatusCode.UNSET


async def test_a_deferral_span_is_a_refusal_with_its_code(known, demo_policy, spans):
    tracer, exporter = spans
    policy = demo_policy.model_copy(
        update={"outage": demo_policy.outage.model_copy(update={"policy": "defer"})}
    )
    outage = AssetUnavailable("busy", status=503)
    result = await answer(known, repo=FailingRepo(outage), policy=policy, tracer=tracer)
    assert result.status == 503
    [span] = exporter.get_finished_spans()
    assert span.attributes[attr.OUTCOME] == "refused"
    assert span.attributes[attr.REASON] == "asset-system-unavailable"


async def test_an_unexpected_failure_span_is_an_error_naming_only_the_type(
    known, demo_policy, spans
):
    tracer, exporter = spans
    failing = FailingRepo(RuntimeError("secret=hunter2 internal"))
    result = await answer(known, repo=failing, policy=demo_policy, tracer=tracer)
    assert result.status == 500
    [span] = exporter.get_finished_spans()
    assert span.attributes[attr.OUTCOME] == "failed"
    assert span.attributes[attr.REASON] == "RuntimeError"
    assert span.status.status_code == StatusCode.ERROR
    assert span.events == ()
    assert "hunter2" not in repr(dict(span.attributes)) + str(span.status.description)


def _points(reader, name):
    data = reader.get_metrics_data()
    return {
        frozenset(point.attributes.items()): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for m in scope.metrics
        if m.name == name
        for point in m.data.data_points
    }


async def test_each_answer_is_counted_once_with_bounded_attributes_only(known, demo_policy):
    # A meter provider of the test's own; the global one stays the no-op API's.
    reader = InMemoryMetricReader()
    metrics = AllocationMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    await answer(known, policy=demo_policy, metrics=metrics)
    outage = AssetUnavailable("asset API timed out")
    await answer(known, repo=FailingRepo(outage), policy=demo_policy, metrics=metrics)
    await answer(b"{}", metrics=metrics)
    failing = FailingRepo(RuntimeError("secret=hunter2 internal"))
    await answer(known, repo=failing, policy=demo_policy, metrics=metrics)

    counts = {k: p.value for k, p in _points(reader, metric.ALLOCATIONS).items()}
    assert counts == {
        frozenset({attr.OUTCOME: "allocated", attr.HUB: EAST, attr.ROLE: "sensor"}.items()): 1,
        # A fallback's reason is the outage's free text: on the span, not on the metric.
        frozenset({attr.OUTCOME: "fallback", attr.HUB: EAST, attr.ROLE: "sensor"}.items()): 1,
        frozenset({attr.OUTCOME: "refused", attr.REASON: "invalid-request"}.items()): 1,
        frozenset({attr.OUTCOME: "failed", attr.REASON: "RuntimeError"}.items()): 1,
    }
    durations = _points(reader, metric.ALLOCATION_DURATION)
    assert {dict(k)[attr.OUTCOME]: p.count for k, p in durations.items()} == {
        "allocated": 1,
        "fallback": 1,
        "refused": 1,
        "failed": 1,
    }
    # Buckets in seconds, not the SDK's defaults (which are meant for milliseconds).
    assert {tuple(p.explicit_bounds) for p in durations.values()} == {metric.DURATION_BUCKETS}
