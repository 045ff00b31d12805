"""Hardware replacement in allocation and reconciliation, over fakes of our ports."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from allocation.errors import AssetNotAssignable, AttestationError, ReplacementRefused
from allocation.http_endpoint import answer_allocation, parse_request
from allocation.service import Allocated, AllocationService, Refused
from asset_client import Asset, AssetConflict
from devstack.dps_requests import allocation_request
from messages import ReconciliationMessage
from observability import DeviceLog
from policies import Policy
from resilience.queue_port import QueueUnavailable
from tests.unit.fakes import FakeAssetRepository, FakeIotHubRegistry, make_asset
from tests.unit.outbox_fakes import ListQueue, RecordingOutbox
from tests.unit.test_reconciler import fallback_twin, reconciler

EAST = "hub-us-east.azure-devices.net"
LOG = DeviceLog(logging.getLogger("allocation"), request_id="r")


def now() -> datetime:
    """Read when a test builds its approval: the allocation judges it against the clock at that
    moment, and a time read at import lags by as long as the suite ran before this module (near
    15 minutes in make test, the unbound-approval window tested below)."""
    return datetime.now(UTC)


class OrderedRepo(FakeAssetRepository):
    """Records how many messages were queued when the link happened, to check the order."""

    def __init__(self, queue, *assets):
        super().__init__(*assets)
        self.queue = queue
        self.queued_before_link = None

    async def link_device(self, asset_id, link):
        self.queued_before_link = len(self.queue.messages)
        return await super().link_device(asset_id, link)


def pending(
    asset_id="AST-1001",
    old="dev-old",
    approved_serial="SN-NEW",
    approved_thumbprint=None,
    approved_at=...,  # now, when the test builds it; None: an approval without a date
    status="pendingReplacement",
):
    asset = make_asset(asset_id, device_id=old, status=status, provisioning_status="provisioned")
    document = asset.model_dump(by_alias=True)
    if status == "pendingReplacement":
        document["replacement"] = {
            "oldDeviceId": old,
            "approvedSerial": approved_serial,
            "approvedThumbprint": approved_thumbprint,
            "reason": "screen cracked",
            "approvedAt": now() if approved_at is ... else approved_at,
        }
    return Asset.model_validate(document)


def with_replacement(policy: Policy, **changes) -> Policy:
    return policy.model_copy(update={"replacement": policy.replacement.model_copy(update=changes)})


def service(repo, policy, recorded=None):
    return AllocationService(
        assets=repo,
        policy=policy,
        asset_api_public_url="http://assets",
        outbox=(recorded or RecordingOutbox()).outbox,
    )


def request(ca, device_id="dev-new", serial="SN-NEW", claim=None, issued=None):
    cert = issued or ca.issue_device(device_id, serial_number=serial)
    payload = {"replacementFor": claim} if claim is not None else None
    body = allocation_request(
        device_id, x509={"clientCertificate": cert.der_base64}, payload=payload
    )
    return parse_request(json.dumps(body).encode())


async def allocate(repo, policy, req, recorded=None):
    return await service(repo, policy, recorded).allocate(req, LOG, request_id="q")


async def test_an_approved_replacement_takes_over_the_asset_and_queues_deregistration_first(
    ca, demo_policy
):
    recorded = RecordingOutbox()
    repo = OrderedRepo(recorded.reconciliation, pending(approved_serial="SN-NEW"))
    outcome = await allocate(
        repo, demo_policy, request(ca, claim={"deviceId": "dev-old", "reason": "broken"}), recorded
    )
    assert isinstance(outcome, Allocated)
    assert outcome.decision.response.initial_twin.tags.asset_id == "AST-1001"
    [(linked_asset, link)] = repo.links
    assert linked_asset == "AST-1001"
    assert (link.device_id, link.replacement_for, link.serial_number) == (
        "dev-new",
        "dev-old",
        "SN-NEW",
    )
    # The device's words travel apart from the technician's reason.
    assert link.device_reason == "broken"
    assert repo.queued_before_link == 1, "the deregistration is queued before the link"
    [message] = recorded.reconciliation.messages
    assert message["kind"] == "deregistration"
    assert message["event"] == {
        "oldDeviceId": "dev-old",
        "newDeviceId": "dev-new",
        "assetId": "AST-1001",
        "action": "disable",
        "approvedBy": "asset system",
        "reason": "screen cracked",
        "deviceReason": "broken",
    }
    assert repo.assets["AST-1001"].device_id == "dev-new"


async def test_an_approval_may_name_the_certificate_by_thumbprint(ca, demo_policy):
    issued = ca.issue_device("dev-new", serial_number="SN-ANY")
    spelled = ":".join(issued.sha256_thumbprint[i : i + 2] for i in range(0, 64, 2)).lower()
    repo = FakeAssetRepository(pending(approved_serial=None, approved_thumbprint=spelled))
    outcome = await allocate(
        repo, demo_policy, request(ca, claim={"deviceId": "dev-old"}, issued=issued)
    )
    assert isinstance(outcome, Allocated)
    assert repo.links[0][1].thumbprint == issued.sha256_thumbprint


async def test_a_repeated_call_after_the_replacement_changes_nothing(ca, demo_policy):
    recorded = RecordingOutbox()
    repo = FakeAssetRepository(pending())
    claim = {"deviceId": "dev-old", "reason": "broken"}
    issued = ca.issue_device("dev-new", serial_number="SN-NEW")
    first = await allocate(repo, demo_policy, request(ca, claim=claim, issued=issued), recorded)
    again = await allocate(repo, demo_policy, request(ca, claim=claim, issued=issued), recorded)
    assert first.decision.response == again.decision.response
    assert len(repo.links) == 1
    assert len(recorded.reconciliation.messages) == 1


SOMEONE_ELSES = "AA" * 32


@pytest.mark.parametrize(
    ("asset", "claim", "rule"),
    [
        (
            make_asset(device_id="dev-old", status="active", provisioning_status="provisioned"),
            {"deviceId": "dev-old"},
            "no-approval",
        ),
        (pending(old="dev-old"), {"deviceId": "dev-other"}, "no-asset-holds-old-device"),
        (pending(approved_serial="SN-OTHER"), {"deviceId": "dev-old"}, "serial-mismatch"),
        (
            pending(approved_serial=None, approved_thumbprint=SOMEONE_ELSES),
            {"deviceId": "dev-old"},
            "thumbprint-mismatch",
        ),
        (pending(approved_serial=None), {"deviceId": "dev-old"}, "approval-unbound"),
        (
            pending(approved_at=now() - timedelta(hours=73)),
            {"deviceId": "dev-old"},
            "approval-expired",
        ),
        (pending(approved_at=None), {"deviceId": "dev-old"}, "approval-without-date"),
        (None, {"deviceId": "dev-old"}, "no-asset-holds-old-device"),
    ],
    ids=[
        "not approved",
        "other device",
        "serial mismatch",
        "thumbprint mismatch",
        "unbound",
        "expired",
        "undated",
        "no asset",
    ],
)
async def test_a_claim_without_a_valid_approval_for_this_hardware_is_refused_and_changes_nothing(
    ca, demo_policy, asset, claim, rule
):
    recorded = RecordingOutbox()
    repo = FakeAssetRepository(*([asset] if asset else []))
    before = dict(repo.assets)
    outcome = await allocate(repo, demo_policy, request(ca, claim=claim), recorded)
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, ReplacementRefused)
    assert outcome.error.rule == rule
    assert repo.links == []
    assert recorded.reconciliation.messages == []
    assert repo.assets == before
    # Refused, dead-lettered and audited like any spoofed claim.
    [letter] = recorded.dead_letters.messages
    assert (letter["reason"], letter["request"]["rule"]) == ("replacement-refused", rule)
    assert recorded.actions() == ["allocation.refused", "replacement.refused"]
    # What DPS relays to the device names the rule's class, never the asset's data.
    assert "SN-OTHER" not in outcome.error.public
    assert "AST-1001" not in outcome.error.public


async def test_an_unbound_approval_is_accepted_only_inside_the_policys_window(ca, demo_policy):
    windowed = with_replacement(demo_policy, unbound_approvals="window", unbound_window_minutes=15)
    fresh = FakeAssetRepository(pending(approved_serial=None, approved_at=now()))
    assert isinstance(
        await allocate(fresh, windowed, request(ca, claim={"deviceId": "dev-old"})), Allocated
    )
    stale = FakeAssetRepository(
        pending(approved_serial=None, approved_at=now() - timedelta(minutes=16))
    )
    outcome = await allocate(stale, windowed, request(ca, claim={"deviceId": "dev-old"}))
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, ReplacementRefused)
    assert outcome.error.rule == "approval-unbound"


async def test_the_ttl_comes_from_the_policy(ca, demo_policy):
    repo = FakeAssetRepository(pending(approved_at=now() - timedelta(hours=2)))
    short = with_replacement(demo_policy, approval_ttl_hours=1)
    outcome = await allocate(repo, short, request(ca, claim={"deviceId": "dev-old"}))
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, ReplacementRefused)
    assert outcome.error.rule == "approval-expired"


async def test_a_takeover_the_asset_system_refuses_is_a_refused_replacement(ca, demo_policy):
    class LostTheRace(FakeAssetRepository):
        async def link_device(self, asset_id, link):
            raise AssetConflict("asset API answered 409 (replacement-not-approved)")

    recorded = RecordingOutbox()
    repo = LostTheRace(pending())
    outcome = await allocate(
        repo, demo_policy, request(ca, claim={"deviceId": "dev-old"}), recorded
    )
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, ReplacementRefused)
    assert outcome.error.rule == "refused-by-asset-system"
    assert recorded.dead_letters.messages[0]["reason"] == "replacement-refused"


async def test_the_devices_reason_is_sanitised_and_capped(ca, demo_policy):
    repo = FakeAssetRepository(pending())
    claim = {"deviceId": "dev-old", "reason": "bro\x00ken\n\u202e" + "x" * 5000}
    await allocate(repo, demo_policy, request(ca, claim=claim))
    reason = repo.links[0][1].device_reason
    assert reason is not None
    assert reason.startswith("bro?ken??")
    assert len(reason) == 256
    assert reason.isascii()
    assert reason.isprintable()


async def test_a_spoofed_claim_is_400_and_dead_lettered(ca, demo_policy):
    repo = FakeAssetRepository(
        make_asset(device_id="dev-old", status="active", provisioning_status="provisioned")
    )
    body = request(ca, claim={"deviceId": "dev-old", "reason": "trust me"}).model_dump(
        by_alias=True, mode="json"
    )
    recorded = RecordingOutbox()
    answer = await answer_allocation(
        json.dumps(body).encode(), request_id="r1", service=service(repo, demo_policy, recorded)
    )
    assert answer.status == 400
    problem = json.loads(answer.body)
    assert problem["type"].endswith(":replacement-refused")
    assert "dev-old" not in problem["detail"]
    [letter] = recorded.dead_letters.messages
    assert letter["reason"] == "replacement-refused"
    assert letter["registrationId"] == "dev-new"
    assert letter["replayable"] is False


@pytest.mark.parametrize("claim", ["dev-old", {"deviceId": "bad id/"}, {"reason": "no id"}])
async def test_a_malformed_claim_names_the_field(ca, demo_policy, claim):
    outcome = await allocate(FakeAssetRepository(), demo_policy, request(ca, claim=claim))
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, AttestationError)
    assert "payload.replacementFor" in outcome.error.public


async def test_the_same_serial_on_a_new_certificate_follows_the_policy(ca, demo_policy):
    asset = make_asset(
        device_id="dev-old", serial="SN-1", status="active", provisioning_status="provisioned"
    )
    outcome = await allocate(FakeAssetRepository(asset), demo_policy, request(ca, serial="SN-1"))
    assert isinstance(outcome.error, AssetNotAssignable)
    assert "dev-old" in outcome.error.detail
    replace = with_replacement(demo_policy, same_serial="replace")
    recorded = RecordingOutbox()
    repo = FakeAssetRepository(asset)
    issued = ca.issue_device("dev-new", serial_number="SN-1")
    await allocate(repo, replace, request(ca, serial="SN-1", issued=issued), recorded)
    approval = repo.patches[0][1]
    assert approval["status"] == "pendingReplacement"
    assert approval["replacement"]["approvedSerial"] == "SN-1"
    assert approval["replacement"]["approvedThumbprint"] == issued.sha256_thumbprint
    assert repo.links[0][1].replacement_for == "dev-old"
    assert recorded.reconciliation.messages[0]["event"]["approvedBy"] == "policy"


async def test_no_queue_no_replacement(ca, demo_policy):
    repo = FakeAssetRepository(pending())
    recorded = RecordingOutbox(
        reconciliation=ListQueue(fail_with=QueueUnavailable("down", queue_name="reconciliation"))
    )
    with pytest.raises(QueueUnavailable):
        await allocate(repo, demo_policy, request(ca, claim={"deviceId": "dev-old"}), recorded)
    assert repo.links == []


def deregistration(action="disable", new="dev-new"):
    return ReconciliationMessage(
        kind="deregistration",
        reason=f"replaced by {new}",
        detail="broken",
        device_id="dev-old",
        asset_id="AST-1001",
        event={
            "oldDeviceId": "dev-old",
            "newDeviceId": new,
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


async def test_the_loser_of_a_race_deregisters_nothing(demo_policy):
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs, EAST, "dev-old")
    winner = make_asset(device_id="dev-winner", status="active", provisioning_status="provisioned")
    rec, _ = reconciler(FakeAssetRepository(winner), hubs, demo_policy)
    outcome = await rec.handle(deregistration(new="dev-loser"), dequeue_count=1, request_id="r")
    assert outcome == "superseded"
    assert hubs.disabled == set()


async def test_the_audit_trail_tells_decision_replacement_and_refusal(ca, demo_policy):
    recorded = RecordingOutbox()
    repo = FakeAssetRepository(pending(approved_serial="SN-NEW"))
    svc = service(repo, demo_policy, recorded)
    await svc.allocate(
        request(ca, claim={"deviceId": "dev-old", "reason": "broken"}), LOG, request_id="q1"
    )
    decided, accepted = recorded.audit.entries
    assert (decided.action, decided.outcome, decided.request_id) == (
        "allocation.decided",
        "allocated",
        "q1",
    )
    assert decided.details["identitySources"]["subject_serial_number"] == "certificate"
    assert decided.details["role"] == "sensor"
    assert decided.details["roleReason"] == "rule"
    assert accepted.action == "replacement.accepted"
    assert accepted.details["oldDeviceId"] == "dev-old"
    # The technician's reason is the replacement's reason; the device's is kept apart.
    assert (accepted.details["reason"], accepted.details["deviceReason"]) == (
        "screen cracked",
        "broken",
    )
    outcome = await svc.allocate(
        request(ca, device_id="dev-evil", serial="SN-X", claim={"deviceId": "dev-new"}),
        LOG,
        request_id="q2",
    )
    assert isinstance(outcome, Refused)
    refused, spoof = recorded.audit.entries[2:]
    assert (refused.action, refused.outcome, refused.device_id) == (
        "allocation.refused",
        "replacement-refused",
        "dev-evil",
    )
    assert (spoof.action, spoof.details["claimedOldDeviceId"]) == ("replacement.refused", "dev-new")
