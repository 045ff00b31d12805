"""The enrollment plan (pure) and the group files' validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.certificates import TestCertificateAuthority
from operator_cli.enrollment_desired import desired_record, masked_url, webhook_url
from operator_cli.enrollment_files import GroupFileError, load_template, parse_template
from operator_cli.enrollment_plan import WEBHOOK_FIELD, plan

REPO = Path(__file__).resolve().parents[2]
CA = TestCertificateAuthority(name="Plan CA")
OTHER_CA = TestCertificateAuthority(name="Other CA")


def _template() -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        (REPO / "enrollment" / "devstack" / "devstack-x509.json").read_text()
    )
    return record


def _desired(url: str = "https://f.test/api/allocate?code=k1", ca=CA) -> dict[str, Any]:
    template = parse_template(Path("devstack-x509.json"), _template())
    return desired_record(template, webhook=url, certificates={"primary": ca.issued.pem})


def _as_dps_answers(record: dict[str, Any], ca=CA) -> dict[str, Any]:
    """What DPS gives back: server fields, the certificate as its info only."""
    answer: dict[str, Any] = json.loads(json.dumps(record))
    answer["etag"] = '"e1"'
    answer["createdDateTimeUtc"] = "2026-01-01T00:00:00Z"
    answer["attestation"]["x509"]["signingCertificates"]["primary"] = {
        "info": {"sha256Thumbprint": ca.issued.sha256_thumbprint.lower(), "subjectName": "x"}
    }
    answer.pop("capabilities", None)
    return answer


def test_a_group_dps_lacks_is_created():
    [entry] = plan([_desired()], {"devstack-x509": None})
    assert entry.action == "create"
    assert entry.etag is None


def test_a_group_as_dps_answers_it_is_unchanged():
    [entry] = plan([_desired()], {"devstack-x509": _as_dps_answers(_desired())})
    assert entry.action == "unchanged"
    assert entry.changes == ()


@pytest.mark.parametrize(
    ("desired", "field_name"),
    [
        (_desired(url="https://g.test/api/allocate?code=k1"), WEBHOOK_FIELD),
        (_desired(url="https://f.test/api/allocate?code=k2"), WEBHOOK_FIELD),
        (_desired(ca=OTHER_CA), "attestation.x509.signingCertificates.primary"),
        (_desired() | {"provisioningStatus": "disabled"}, "provisioningStatus"),
        (_desired() | {"iotHubs": ["hub-us-east.azure-devices.net"]}, "iotHubs"),
    ],
)
def test_a_difference_is_an_update_with_the_etag_read(desired, field_name):
    [entry] = plan([desired], {"devstack-x509": _as_dps_answers(_desired())})
    assert entry.action == "update"
    assert entry.etag == '"e1"'
    assert [change.field for change in entry.changes] == [field_name]


def test_hub_order_does_not_matter():
    desired = _desired()
    desired["iotHubs"] = list(reversed(desired["iotHubs"]))
    [entry] = plan([desired], {"devstack-x509": _as_dps_answers(_desired())})
    assert entry.action == "unchanged"


def test_a_masked_url_from_dps_compares_on_the_rest():
    answer = _as_dps_answers(_desired())
    answer["customAllocationDefinition"]["webhookUrl"] = "https://f.test/api/allocate?****"
    [entry] = plan([_desired()], {"devstack-x509": answer})
    assert entry.action == "unchanged"


def test_the_key_goes_into_the_query_and_never_into_the_masked_form():
    url = webhook_url("https://f.test/api/allocate", "a+b/c=")
    assert url == "https://f.test/api/allocate?code=a%2Bb%2Fc%3D"
    assert masked_url(url) == "https://f.test/api/allocate?****"
    assert webhook_url("https://f.test/x?y=1", "k") == "https://f.test/x?y=1&code=k"
    assert webhook_url("https://f.test/x", None) == "https://f.test/x"


def _broken(**changes: Any) -> dict[str, Any]:
    record = _template()
    for dotted, value in changes.items():
        target = record
        *parents, last = dotted.split("__")
        for name in parents:
            target = target[name]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
    return record


_DROP = object()


@pytest.mark.parametrize(
    ("record", "field_name"),
    [
        ([], "(file)"),
        (_broken(enrollmentGroupId="bad id!"), "enrollmentGroupId"),
        (_broken(enrollmentGroupId="another-id"), "enrollmentGroupId"),
        (_broken(etag='"x"'), "etag"),
        (_broken(surprise=1), "surprise"),
        (_broken(attestation__type="tpm"), "attestation.type"),
        (_broken(attestation__x509=_DROP), "attestation.x509"),
        (
            _broken(attestation__x509__signingCertificates__primary={"certificate": "ca:Bad"}),
            "attestation.x509.signingCertificates.primary.certificate",
        ),
        (
            _broken(attestation__x509__signingCertificates__primary={"certificate": "file:/x"}),
            "attestation.x509.signingCertificates.primary.certificate",
        ),
        (
            _broken(attestation__x509__signingCertificates__tertiary={"certificate": "ca:x"}),
            "attestation.x509.signingCertificates.tertiary",
        ),
        (_broken(allocationPolicy="hashed"), "allocationPolicy"),
        (
            _broken(customAllocationDefinition__webhookUrl="https://f.test/?code=secret"),
            "customAllocationDefinition.webhookUrl",
        ),
        (
            _broken(customAllocationDefinition__apiVersion=_DROP),
            "customAllocationDefinition.apiVersion",
        ),
        (_broken(reprovisionPolicy__updateHubAssignment="yes"), "updateHubAssignment"),
        (_broken(capabilities__iotEdge="no"), "capabilities.iotEdge"),
        (_broken(iotHubs="hub"), "iotHubs"),
        (_broken(provisioningStatus="paused"), "provisioningStatus"),
    ],
)
def test_a_bad_group_file_is_refused_naming_the_file_and_field(tmp_path, record, field_name):
    path = tmp_path / "devstack-x509.json"
    path.write_text(json.dumps(record))
    with pytest.raises(GroupFileError) as raised:
        load_template(path)
    assert str(path) in str(raised.value)
    assert field_name in str(raised.value)


def test_a_file_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "devstack-x509.json"
    path.write_text("{not json")
    with pytest.raises(GroupFileError, match=r"devstack-x509.json: \(file\): is not JSON"):
        load_template(path)


@pytest.mark.parametrize("directory", ["groups", "devstack"])
def test_the_repositorys_group_files_are_valid(directory):
    for path in (REPO / "enrollment" / directory).glob("*.json"):
        template = load_template(path)
        assert template.certificates["primary"].kind == "local-ca"
