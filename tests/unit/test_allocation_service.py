"""The allocation use case over a fake asset port: decisions, links and refusals."""

import json
import logging

import pytest

from allocation.errors import AssetNotAssignable, CommonNameMismatch, NoHubForDevice, UnknownDevice
from allocation.http_endpoint import parse_request
from allocation.service import Allocated, AllocationService, Refused
from devstack.dps_requests import allocation_request
from observability import DEVICE_FIELDS, DeviceLog
from policies import Policy
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import RecordingOutbox

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
PUBLIC = "https://assets.example.com/api"


def service(repo, policy, recorded=None):
    recorded = recorded or RecordingOutbox()
    return AllocationService(
        assets=repo, policy=policy, asset_api_public_url=PUBLIC, outbox=recorded.outbox
    )


async def allocated(repo, policy, request):
    outcome = await service(repo, policy).allocate(request, log())
    assert isinstance(outcome, Allocated), outcome
    return outcome.decision


async def refused(repo, policy, request, error_type, match=None):
    recorded = RecordingOutbox()
    outcome = await service(repo, policy, recorded).allocate(request, log())
    assert isinstance(outcome, Refused), outcome
    assert isinstance(outcome.error, error_type), outcome.error
    if match is not None:
        assert match in outcome.error.detail
    # Every refusal is dead-lettered and audited, with its reason.
    [letter] = recorded.dead_letters.messages
    assert letter["reason"] == outcome.error.code
    assert recorded.actions()[0] == "allocation.refused"
    return outcome.error


def log():
    return DeviceLog(logging.getLogger("allocation"), request_id="req-1")


def cert_request(ca, registration_id="sensor-1001", serial="SN-1001", **kwargs):
    cert = ca.issue_device(registration_id, serial_number=serial)
    body = allocation_request(
        registration_id, x509={"clientCertificate": cert.der_base64}, **kwargs
    )
    return parse_request(json.dumps(body).encode()), cert


async def test_a_known_device_gets_hub_role_twin_and_is_linked(ca, demo_policy):
    repo = FakeAssetRepository(make_asset())
    request, cert = cert_request(ca)
    decision = await allocated(repo, demo_policy, request)
    body = json.loads(decision.response.to_json())
    assert body["iotHubHostName"] == EAST
    assert body["initialTwin"]["tags"] == {
        "assetId": "AST-1001",
        "assetType": "temperature-sensor",
        "location": "us-east/plant-1/line-1",
        "deviceRole": "sensor",
        "provisioningState": "provisioned",
        "hubSelection": "location",
        "policyVersion": "demo-2026-11",
    }
    desired = body["initialTwin"]["properties"]["desired"]
    assert desired["rolePermissions"]["role"] == "sensor"
    assert desired["rolePermissions"]["commands"] == {"receive": False, "relay": False}
    assert desired["assetManagementEndpoint"] == f"{PUBLIC}/assets/AST-1001"
    assert body["payload"] == {
        "deviceRole": "sensor",
        "provisioningState": "provisioned",
        "assetId": "AST-1001",
    }
    [(asset_id, link)] = repo.links
    assert asset_id == "AST-1001"
    assert (link.device_id, link.registration_id) == ("sensor-1001", "sensor-1001")
    assert link.thumbprint == cert.sha256_thumbprint


async def test_a_repeated_registration_answers_the_same_and_links_once(ca, demo_policy):
    repo = FakeAssetRepository(make_asset())
    request, _ = cert_request(ca)
    first = await allocated(repo, demo_policy, request)
    again, _ = cert_request(ca, current_hub=EAST)  # re-registration with a fresh certificate
    second = (await service(repo, demo_policy).allocate(again, log())).decision
    assert first.response == second.response
    assert len(repo.links) == 1
    assert second.link is None
    # The second lookup found the device by its id, not by serial.
    assert repo.calls[-1] == "find_by_device_id"


@pytest.mark.parametrize(
    ("asset_type", "location", "hub", "role"),
    [
        ("valve-actuator", "us-east/plant-2/line-1", EAST, "actuator"),
        ("field-gateway", "eu-west/site-b", WEST, "gateway"),
        ("label-printer", "us-east/plant-1/packing", EAST, "sensor"),
    ],
)
async def test_role_and_hub_follow_the_asset(ca, demo_policy, asset_type, location, hub, role):
    repo = FakeAssetRepository(make_asset(asset_type=asset_type, location=location))
    request, _ = cert_request(ca)
    decision = await allocated(repo, demo_policy, request)
    assert decision.response.iot_hub_host_name == hub
    assert decision.role.role.value == role


async def test_an_unknown_device_is_rejected_under_reject(ca, demo_policy):
    request, _ = cert_request(ca, serial="SN-404")
    error = await refused(FakeAssetRepository(), demo_policy, request, UnknownDevice, "SN-404")
    assert "SN-404" not in error.public


async def test_an_unknown_device_is_quarantined_under_quarantine(ca, demo_policy: Policy):
    policy = demo_policy.model_copy(update={"unknown_device": "quarantine"})
    request, _ = cert_request(ca, serial="SN-404")
    repo = FakeAssetRepository()
    decision = await allocated(repo, policy, request)
    tags = decision.response.initial_twin.tags
    assert tags.provisioning_state.value == "quarantined"
    assert tags.asset_id is None
    assert tags.device_role.value == "sensor"
    assert decision.response.iot_hub_host_name in (EAST, WEST)
    assert decision.response.initial_twin.properties.desired.asset_management_endpoint is None
    assert repo.links == []


async def test_a_location_without_rule_is_spread_under_spread(ca, demo_policy):
    repo = FakeAssetRepository(make_asset(location="ap-south/site-x"))
    request, _ = cert_request(ca)
    decision = await allocated(repo, demo_policy, request)
    assert decision.response.initial_twin.tags.hub_selection.value == "spread"
    assert decision.response.iot_hub_host_name in (EAST, WEST)


async def test_a_location_without_rule_is_refused_under_reject(ca, demo_policy):
    policy = demo_policy.model_copy(update={"hub_fallback": "reject"})
    repo = FakeAssetRepository(make_asset(location="ap-south/site-x"))
    request, _ = cert_request(ca)
    error = await refused(repo, policy, request, NoHubForDevice, "ap-south/site-x")
    assert "ap-south" not in error.public
    assert repo.links == []


async def test_a_retired_asset_refuses_the_device(ca, demo_policy):
    repo = FakeAssetRepository(make_asset(status="retired"))
    request, _ = cert_request(ca)
    error = await refused(repo, demo_policy, request, AssetNotAssignable, "retired")
    assert "AST-1001" not in error.public
    assert repo.links == []


async def test_an_asset_linked_to_another_device_is_not_taken_over(ca, demo_policy):
    repo = FakeAssetRepository(
        make_asset(device_id="sensor-0999", provisioning_status="provisioned", status="active")
    )
    request, _ = cert_request(ca)
    error = await refused(repo, demo_policy, request, AssetNotAssignable, "sensor-0999")
    assert "sensor-0999" not in error.public
    assert "AST-1001" not in error.public
    assert repo.links == []


async def test_two_assets_for_one_serial_is_a_data_problem_not_a_guess(ca, demo_policy):
    repo = FakeAssetRepository(make_asset("AST-1"), make_asset("AST-2"))
    request, _ = cert_request(ca)
    error = await refused(repo, demo_policy, request, AssetNotAssignable, "2 assets match serial")
    assert "AST-2" not in error.public


async def test_attestation_failures_happen_before_any_asset_call(ca, demo_policy):
    cert = ca.issue_device("other-device", serial_number="SN-1001")
    body = allocation_request("sensor-1001", x509={"clientCertificate": cert.der_base64})
    repo = FakeAssetRepository(make_asset())
    request = parse_request(json.dumps(body).encode())
    error = await refused(repo, demo_policy, request, CommonNameMismatch)
    assert "other-device" in error.detail
    assert "other-device" not in error.public
    assert repo.calls == []


async def test_payload_claims_cannot_change_role_hub_or_asset(ca, demo_policy):
    repo = FakeAssetRepository(
        make_asset(), make_asset("AST-9", serial="SN-9", asset_type="x-gateway")
    )
    spoof = {"deviceRole": "gateway", "assetId": "AST-9", "iotHubHostName": WEST, "role": "gateway"}
    request, _ = cert_request(ca, payload=spoof)
    decision = await allocated(repo, demo_policy, request)
    assert decision.response.iot_hub_host_name == EAST
    assert decision.role.role.value == "sensor"
    assert decision.response.initial_twin.tags.asset_id == "AST-1001"


async def test_the_outcome_log_line_carries_the_device_fields(ca, demo_policy, caplog):
    repo = FakeAssetRepository(make_asset())
    request, _ = cert_request(ca)
    with caplog.at_level(logging.INFO, logger="allocation"):
        await service(repo, demo_policy).allocate(request, log())
    [record] = [r for r in caplog.records if r.getMessage() == "allocated"]
    assert {name: getattr(record, name) for name in DEVICE_FIELDS} == {
        "registrationId": "sensor-1001",
        "deviceId": "sensor-1001",
        "assetId": "AST-1001",
        "requestId": "req-1",
    }
    assert record.hub == EAST
