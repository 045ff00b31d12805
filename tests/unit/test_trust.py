"""Trust anchors the policy pins: enrollment groups and issuing CAs, with real certificates."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allocation.errors import (
    CertificateRequired,
    UntrustedEnrollment,
    UntrustedIssuer,
)
from allocation.http_endpoint import answer_allocation
from allocation.service import AllocationService
from allocation.trust import check_enrollment, check_issuer
from devstack.certificates import TestCertificateAuthority
from devstack.dps_requests import allocation_request, enrollment_group_record
from policies import PolicyError, TrustPolicy, load_policy, parse_policy
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import RecordingOutbox

REPO = Path(__file__).resolve().parents[2]


def now() -> datetime:
    """Read at each check, as the devstack authority stamps a certificate when it issues it:
    a time read at import lags the certificates by as long as the suite ran before this module
    (over 10 minutes in make test, past their 10-minute back-dating)."""
    return datetime.now(UTC)


def pinned(*cas: TestCertificateAuthority, **kwargs) -> TrustPolicy:
    return TrustPolicy(issuing_cas=tuple(ca.issued.pem for ca in cas), **kwargs)


def test_nothing_pinned_serves_every_group_and_issuer(ca):
    trust = TrustPolicy()
    check_enrollment(trust, group_id="anything", individual=False)
    check_enrollment(trust, group_id=None, individual=True)
    check_issuer(trust, [ca.issue_device("dev-1").certificate], now=now())


def test_pinned_groups_refuse_other_groups_and_individual_enrollments():
    trust = TrustPolicy(enrollment_groups=("plant-devices",))
    check_enrollment(trust, group_id="Plant-Devices", individual=False)
    for group in ("other-group", None):
        with pytest.raises(UntrustedEnrollment) as caught:
            check_enrollment(trust, group_id=group, individual=False)
        assert "trust.enrollment_groups" in caught.value.public
    with pytest.raises(UntrustedEnrollment):
        check_enrollment(trust, group_id=None, individual=True)
    allowed = TrustPolicy(enrollment_groups=("plant-devices",), individual_enrollments=True)
    check_enrollment(allowed, group_id=None, individual=True)


def test_a_leaf_from_a_pinned_ca_verifies_and_one_from_another_ca_does_not(ca):
    trust = pinned(ca)
    check_issuer(trust, [ca.issue_device("dev-1").certificate], now=now())
    stranger = TestCertificateAuthority("Someone Else's CA")
    with pytest.raises(UntrustedIssuer) as caught:
        check_issuer(trust, [stranger.issue_device("dev-1").certificate], now=now())
    assert caught.value.field == "deviceRuntimeContext.x509.clientCertificate"
    assert "trust.issuing_cas" in caught.value.public


def test_a_ca_named_like_the_pinned_one_but_with_another_key_does_not_verify(ca):
    impostor = TestCertificateAuthority(ca.name)  # same subject, different key
    with pytest.raises(UntrustedIssuer):
        check_issuer(pinned(ca), [impostor.issue_device("dev-1").certificate], now=now())


def test_validity_is_checked_against_the_clock(ca):
    expired = ca.issue_device(
        "dev-1", not_before=now() - timedelta(days=10), not_after=now() - timedelta(days=1)
    )
    with pytest.raises(UntrustedIssuer):
        check_issuer(pinned(ca), [expired.certificate], now=now())


def test_an_intermediate_presented_in_the_chain_links_the_leaf_to_the_pinned_root(ca):
    intermediate = ca.issue_intermediate()
    leaf = intermediate.issue_device("dev-1").certificate
    trust = pinned(ca)
    check_issuer(trust, [leaf, intermediate.issued.certificate], now=now())
    with pytest.raises(UntrustedIssuer):
        check_issuer(trust, [leaf], now=now())  # the chain is broken without it


def test_a_thumbprint_pin_anchors_at_the_certificate_the_chain_carries(ca):
    intermediate = ca.issue_intermediate()
    leaf = intermediate.issue_device("dev-1").certificate
    thumbprint = intermediate.issued.sha256_thumbprint
    trust = TrustPolicy(issuing_cas=(f"sha256:{thumbprint.lower()}",))
    check_issuer(trust, [leaf, intermediate.issued.certificate], now=now())
    with pytest.raises(UntrustedIssuer):
        check_issuer(trust, [leaf], now=now())
    other = TestCertificateAuthority()
    with pytest.raises(UntrustedIssuer):
        check_issuer(
            trust, [other.issue_device("x").certificate, other.issued.certificate], now=now()
        )


def test_without_a_certificate_pins_apply_only_when_the_policy_requires_one(ca):
    check_issuer(pinned(ca), [], now=now())
    with pytest.raises(CertificateRequired):
        check_issuer(pinned(ca, require_certificate=True), [], now=now())


def test_require_certificate_without_cas_is_a_policy_error():
    with pytest.raises(ValueError, match="require_certificate"):
        TrustPolicy(require_certificate=True)


def test_the_policy_file_reads_ca_files_relative_to_itself(ca, tmp_path):
    (tmp_path / "cas").mkdir()
    (tmp_path / "cas" / "devices.pem").write_text(ca.issued.pem)
    text = (REPO / "policies" / "demo.toml").read_text()
    text += '\nissuing_cas = ["cas/devices.pem"]\n'  # appended to the demo's [trust] table
    (tmp_path / "policy.toml").write_text(text)
    trust = load_policy(tmp_path / "policy.toml").trust
    assert trust.pins_issuers
    check_issuer(trust, [ca.issue_device("dev-1").certificate], now=now())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cas/missing.pem", "trust.issuing_cas[0]: cannot read"),
        ("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----", "PEM"),
    ],
)
def test_a_bad_ca_entry_names_itself(tmp_path, entry, message):
    text = f"version = 'v'\ndefault_role = 'sensor'\n[trust]\nissuing_cas = [{json.dumps(entry)}]\n"
    with pytest.raises(PolicyError, match="issuing_cas"):
        parse_policy(text, "policy.toml", tmp_path)
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.toml", tmp_path)
    assert message in str(caught.value)


async def test_through_the_webhook_a_request_outside_the_pins_is_400_and_audited(ca, demo_policy):
    stranger = TestCertificateAuthority("Stranger CA")
    policy = demo_policy.model_copy(
        update={"trust": pinned(ca, enrollment_groups=("devstack-x509",))}
    )
    recorded = RecordingOutbox()
    repo = FakeAssetRepository(make_asset())
    service = AllocationService(
        assets=repo, policy=policy, asset_api_public_url="http://a", outbox=recorded.outbox
    )

    async def post(cert, group="devstack-x509"):
        body = allocation_request(
            "sensor-1001",
            x509={"clientCertificate": cert.der_base64},
            enrollment=enrollment_group_record(group),
        )
        answer = await answer_allocation(json.dumps(body).encode(), request_id="r", service=service)
        return answer.status, json.loads(answer.body)

    good = ca.issue_device("sensor-1001", serial_number="SN-1001")
    assert (await post(good))[0] == 200
    status, problem = await post(stranger.issue_device("sensor-1001", serial_number="SN-1001"))
    assert (status, problem["type"].split(":")[-1]) == (400, "untrusted-issuer")
    status, problem = await post(good, group="someone-elses-group")
    assert (status, problem["type"].split(":")[-1]) == (400, "untrusted-enrollment")
    assert "someone-elses-group" not in problem["detail"]
    refusals = [e for e in recorded.audit.entries if e.action == "allocation.refused"]
    assert [e.outcome for e in refusals] == ["untrusted-issuer", "untrusted-enrollment"]
    assert len(repo.links) == 1  # only the trusted request reached the asset system


def test_the_demo_policy_pins_the_devstack_group():
    policy = load_policy(REPO / "policies" / "demo.toml")
    assert policy.trust.enrollment_groups == ("devstack-x509",)
