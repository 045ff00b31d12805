"""An outage never admits what a working asset system would refuse (fakes of our ports)."""

import json
import logging

import pytest

from allocation.errors import AllocationDeferred, AssetRecordInvalid
from allocation.http_endpoint import answer_allocation, parse_request
from allocation.service import Allocated, AllocationService, Refused
from asset_client import AssetCircuitOpen, AssetContractViolation, AssetUnavailable
from devstack.dps_requests import allocation_request
from observability import DeviceLog
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import RecordingOutbox

EAST = "hub-us-east.azure-devices.net"
LOG = DeviceLog(logging.getLogger("allocation"), request_id="r")
OUTAGES = [
    AssetUnavailable("asset API timed out"),
    AssetUnavailable("busy", retry_after=3, status=503),
    AssetCircuitOpen("asset API circuit is open", retry_after=30),
]


class Down(FakeAssetRepository):
    def __init__(self, error, *assets):
        super().__init__(*assets)
        self.error = error

    async def find_by_device_id(self, device_id):
        raise self.error

    async def find_by_serial_number(self, serial_number):
        raise self.error


def request(ca, **kwargs):
    cert = ca.issue_device("sensor-1001", serial_number="SN-1001")
    body = allocation_request("sensor-1001", x509={"clientCertificate": cert.der_base64}, **kwargs)
    return parse_request(json.dumps(body).encode())


async def allocate(repo, policy, req):
    recorded = RecordingOutbox()
    service = AllocationService(
        assets=repo, policy=policy, asset_api_public_url="http://a", outbox=recorded.outbox
    )
    return await service.allocate(req, LOG, request_id="q"), recorded


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_plain_first_registration_gets_the_fallback(ca, demo_policy, error):
    outcome, recorded = await allocate(Down(error), demo_policy, request(ca))
    assert isinstance(outcome, Allocated)
    assert outcome.decision.provisioning_state.value == "pendingReconciliation"
    assert len(recorded.reconciliation.messages) == 1


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_replacement_claim_is_deferred_never_admitted(ca, demo_policy, error):
    claim = {"replacementFor": {"deviceId": "dev-old", "reason": "broken"}}
    outcome, recorded = await allocate(Down(error), demo_policy, request(ca, payload=claim))
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, AllocationDeferred)
    assert "replacement claim" in outcome.error.detail
    assert recorded.reconciliation.messages == []
    assert recorded.dead_letters.messages == []
    assert recorded.actions() == []  # a deferral is no decision yet: only its log line


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_re_registration_is_deferred_never_admitted(ca, demo_policy, error):
    outcome, recorded = await allocate(Down(error), demo_policy, request(ca, current_hub=EAST))
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, AllocationDeferred)
    assert recorded.reconciliation.messages == []


async def test_a_deferral_answers_503_with_retry_after(ca, demo_policy):
    claim = {"replacementFor": {"deviceId": "dev-old"}}
    body = request(ca, payload=claim).model_dump(by_alias=True, mode="json")
    service = AllocationService(
        assets=Down(AssetUnavailable("down")),
        policy=demo_policy,
        asset_api_public_url="http://a",
        outbox=RecordingOutbox().outbox,
    )
    answer = await answer_allocation(json.dumps(body).encode(), request_id="r", service=service)
    assert answer.status == 503
    assert answer.headers["retry-after"] == str(demo_policy.outage.retry_after_seconds)


async def test_a_record_that_breaks_the_contract_is_a_refusal_not_an_outage(ca, demo_policy):
    outcome, recorded = await allocate(
        Down(AssetContractViolation("GET /assets answered an invalid asset: status")),
        demo_policy,
        request(ca),
    )
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, AssetRecordInvalid)
    assert recorded.reconciliation.messages == []
    [letter] = recorded.dead_letters.messages
    assert letter["reason"] == "asset-record-invalid"
    assert "invalid asset" not in outcome.error.public


async def test_an_outage_during_the_link_of_a_known_device_still_falls_back(ca, demo_policy):
    class LinkDown(FakeAssetRepository):
        async def link_device(self, asset_id, link):
            raise AssetUnavailable("timed out")

    outcome, recorded = await allocate(LinkDown(make_asset()), demo_policy, request(ca))
    assert isinstance(outcome, Allocated)
    assert outcome.decision.provisioning_state.value == "pendingReconciliation"
    assert recorded.actions() == ["allocation.fallback"]
    # The location was seen before the outage: the fallback routes by it.
    assert outcome.decision.response.iot_hub_host_name == EAST
