"""Hardware replacement in allocation and reconciliation, over fakes of our ports."""

import json
import logging

import pytest

from allocation.errors import AssetNotAssignable, AttestationError, ReplacementRefused
from allocation.http_endpoint import answer_allocation, parse_request
from allocation.service import AllocationService
from asset_client import Asset
from devstack.dps_requests import allocation_request
from observability import DeviceLog
from resilience.durable_queue import QueueUnavailable
from resilience.reconciliation import ReconciliationMessage, ReconciliationRecorder
from tests.unit.fakes import FakeAssetRepository, FakeIotHubRegistry, make_asset
from tests.unit.test_reconciler import fallback_twin, reconciler

EAST = "hub-us-east.azure-devices.net"
LOG = DeviceLog(logging.getLogger("allocation"), request_id="r")


class ListQueue:
    def __init__(self, fail=False):
        self.messages = []
        self.fail = fail

    async def send(self, message):
        if self.fail:
            raise QueueUnavailable("queue down", queue_name="reconciliation")
        self.messages.append(dict(message))


class OrderedRepo(FakeAssetRepository):
    """Records the moment of each call relative to the queue, to check the order."""

    def __init__(self, queue, *assets):
        super().__init__(*assets)
        self.queue = queue
        self.queued_before_link = None

    async def link_device(self, asset_id, link):
        self.queued_before_link = len(self.queue.messages)
        return await super().link_device(asset_id, link)


def pending(asset_id="AST-1001", old="dev-old", approved_serial=None, status="pendingReplacement"):
    asset = make_asset(asset_id, device_id=old, status=status, provisioning_status="provisioned")
    document = asset.model_dump(by_alias=True)
    if status == "pendingReplacement":
        document["replacement"] = {
            "oldDeviceId": old,
            "approvedSerial": approved_serial,
            "reason": "screen cracked",
        }
    return Asset.model_validate(document)


def service(repo, policy, queue):
    return AllocationService(
        assets=repo,
        policy=policy,
        asset_api_public_url="http://assets",
        deregistrations=ReconciliationRecorder(queue),
    )


def request(ca, device_id="dev-new", serial="SN-NEW", claim=None):
    cert = ca.issue_device(device_id, serial_number=serial)
    payload = {"replacementFor": claim} if claim is not None else None
    body = allocation_request(
        device_id, x509={"clientCertificate": cert.der_base64}, payload=payload
    )
    return parse_request(json.dumps(body).encode())


async def test_an_approved_replacement_takes_over_the_asset_and_queues_deregistration_first(
    ca, demo_policy
):
    queue = ListQueue()
    repo = OrderedRepo(queue, pending(approved_serial="SN-NEW"))
    outcome = await service(repo, demo_policy, queue).allocate(
        request(ca, claim={"deviceId": "dev-old", "reason": "broken"}), LOG
    )
    decision = outcome.decision
    assert decision.response.initial_twin.tags.asset_id == "AST-1001"
    [(linked_asset, link)] = repo.links
    assert linked_asset == "AST-1001"
    assert (link.device_id, link.replacement_for, link.reason) == ("dev-new", "dev-old", "broken")
    assert repo.queued_before_link == 1, "the deregistration is queued before the link"
    [message] = queue.messages
    assert message["kind"] == "deregistration"
    assert message["event"] == {
        "oldDeviceId": "dev-old",
        "newDeviceId": "dev-new",
        "assetId": "AST-1001",
        "action": "disable",
        "approvedBy": "asset system",
        "reason": "broken",
    }
    assert repo.assets["AST-1001"].device_id == "dev-new"


async def test_a_repeated_call_after_the_replacement_changes_nothing(ca, demo_policy):
    queue = ListQueue()
    repo = FakeAssetRepository(pending(approved_serial=None))
    claim = {"deviceId": "dev-old", "reason": "broken"}
    first = await service(repo, demo_policy, queue).allocate(request(ca, claim=claim), LOG)
    again = await service(repo, demo_policy, queue).allocate(request(ca, claim=claim), LOG)
    assert first.decision.response == again.decision.response
    assert len(repo.links) == 1
    assert len(queue.messages) == 1


@pytest.mark.parametrize(
    ("asset", "claim", "message"),
    [
        (
            make_asset(device_id="dev-old", status="active", provisioning_status="provisioned"),
            {"deviceId": "dev-old"},
            "no approved replacement",
        ),
        (pending(old="dev-old"), {"deviceId": "dev-other"}, "which no asset holds"),
        (pending(old="dev-old", approved_serial="SN-OTHER"), {"deviceId": "dev-old"}, "SN-OTHER"),
        (None, {"deviceId": "dev-old"}, "which no asset holds"),
    ],
    ids=["not approved", "other device", "serial mismatch", "no asset"],
)
async def test_an_unapproved_claim_is_refused_and_nothing_changes(
    ca, demo_policy, asset, claim, message
):
    queue = ListQueue()
    repo = FakeAssetRepository(*([asset] if asset else []))
    before = dict(repo.assets)
    with pytest.raises(ReplacementRefused, match=message):
        await service(repo, demo_policy, queue).allocate(request(ca, claim=claim), LOG)
    assert repo.links == []
    assert queue.messages == []
    assert repo.assets == before


async def test_a_spoofed_claim_is_400_and_dead_lettered(ca, demo_policy):
    repo = FakeAssetRepository(
        make_asset(device_id="dev-old", status="active", provisioning_status="provisioned")
    )
    body = request(ca, claim={"deviceId": "dev-old", "reason": "trust me"}).model_dump(
        by_alias=True, mode="json"
    )
    answer = await answer_allocation(
        json.dumps(body).encode(),
        request_id="r1",
        service=service(repo, demo_policy, ListQueue()),
    )
    assert answer.status == 400
    assert json.loads(answer.body)["type"].endswith(":replacement-refused")
    assert answer.dead_letter is not None
    letter = json.loads(answer.dead_letter)
    assert letter["reason"] == "replacement-refused"
    assert letter["registrationId"] == "dev-new"
    assert letter["replayable"] is False


@pytest.mark.parametrize("claim", ["dev-old", {"deviceId": "bad id/"}, {"reason": "no id"}])
async def test_a_malformed_claim_names_the_field(ca, demo_policy, claim):
    with pytest.raises(AttestationError, match=r"payload\.replacementFor"):
        await service(FakeAssetRepository(), demo_policy, ListQueue()).allocate(
            request(ca, claim=claim), LOG
        )


async def test_the_same_serial_on_a_new_certificate_follows_the_policy(ca, demo_policy):
    asset = make_asset(
        device_id="dev-old", serial="SN-1", status="active", provisioning_status="provisioned"
    )
    queue = ListQueue()
    with pytest.raises(AssetNotAssignable, match="dev-old"):
        await service(FakeAssetRepository(asset), demo_policy, queue).allocate(
            request(ca, serial="SN-1"), LOG
        )
    replace = demo_policy.model_copy(
        update={
            "replacement": demo_policy.replacement.model_copy(update={"same_serial": "replace"})
        }
    )
    repo = FakeAssetRepository(asset)
    await service(repo, replace, queue).allocate(request(ca, serial="SN-1"), LOG)
    assert repo.patches[0][1]["status"] == "pendingReplacement"
    assert repo.patches[0][1]["replacement"]["approvedSerial"] == "SN-1"
    assert repo.links[0][1].replacement_for == "dev-old"
    assert queue.messages[0]["event"]["approvedBy"] == "policy"


async def test_no_queue_no_replacement(ca, demo_policy):
    repo = FakeAssetRepository(pending())
    with pytest.raises(QueueUnavailable):
        await service(repo, demo_policy, ListQueue(fail=True)).allocate(
            request(ca, claim={"deviceId": "dev-old"}), LOG
        )
    assert repo.links == []


def deregistration(action="disable"):
    return ReconciliationMessage(
        kind="deregistration",
        reason="replaced by dev-new",
        detail="broken",
        device_id="dev-old",
        asset_id="AST-1001",
        event={
            "oldDeviceId": "dev-old",
            "newDeviceId": "dev-new",
            "assetId": "AST-1001",
            "action": action,
        },
    )


async def test_deregistration_waits_for_the_replacement_link(demo_policy):
    from reconciliation.reconciler import ReplacementPending

    hubs = FakeIotHubRegistry()
    fallback_twin(hubs, EAST, "dev-old")
    rec, _ = reconciler(FakeAssetRepository(pending()), hubs, demo_policy)
    with pytest.raises(ReplacementPending):
        await rec.handle(deregistration(), dequeue_count=1, request_id="r")
    assert hubs.disabled == set()


@pytest.mark.parametrize(("action", "result"), [("disable", "disabled"), ("delete", "deleted")])
async def test_deregistration_disables_or_deletes_the_old_device(demo_policy, action, result):
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs, EAST, "dev-old")
    linked = make_asset(device_id="dev-new", status="active", provisioning_status="provisioned")
    rec, _ = reconciler(FakeAssetRepository(linked), hubs, demo_policy)
    assert await rec.handle(deregistration(action), dequeue_count=1, request_id="r") == result
    if action == "disable":
        assert (EAST, "dev-old") in hubs.disabled
    else:
        assert (EAST, "dev-old") not in hubs.twins
    assert await rec.handle(deregistration(action), dequeue_count=2, request_id="r") in (
        result,
        "already gone",
    )


async def test_the_audit_trail_tells_decision_replacement_and_refusal(ca, demo_policy):
    from audit import ListAudit

    audit = ListAudit()
    repo = FakeAssetRepository(pending(approved_serial="SN-NEW"))
    svc = AllocationService(
        assets=repo,
        policy=demo_policy,
        asset_api_public_url="http://assets",
        deregistrations=ReconciliationRecorder(ListQueue()),
        audit=audit,
    )
    await svc.allocate(
        request(ca, claim={"deviceId": "dev-old", "reason": "broken"}), LOG, request_id="q1"
    )
    decided, accepted = audit.entries
    assert (decided.action, decided.outcome, decided.request_id) == (
        "allocation.decided",
        "allocated",
        "q1",
    )
    assert decided.details["identitySources"]["subject_serial_number"] == "certificate"
    assert decided.details["role"] == "sensor"
    assert decided.details["roleReason"] == "rule"
    assert (accepted.action, accepted.details["oldDeviceId"], accepted.details["reason"]) == (
        "replacement.accepted",
        "dev-old",
        "broken",
    )
    with pytest.raises(ReplacementRefused):
        await svc.allocate(
            request(ca, device_id="dev-evil", serial="SN-X", claim={"deviceId": "dev-new"}),
            LOG,
            request_id="q2",
        )
    refused, spoof = audit.entries[2:]
    assert (refused.action, refused.outcome, refused.device_id) == (
        "allocation.refused",
        "replacement-refused",
        "dev-evil",
    )
    assert (spoof.action, spoof.details["claimedOldDeviceId"]) == ("replacement.refused", "dev-new")
