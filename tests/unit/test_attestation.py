"""read_identity over every shape of deviceRuntimeContext.x509, with real certificates.

The shapes: (docs/contracts.md, "The x509 attestation shape").
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from allocation.attestation import read_identity
from allocation.contract import AllocationRequest
from allocation.errors import (
    AmbiguousSubject,
    AttestationError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateSummaryMismatch,
    CertificateUnreadable,
    CommonNameMismatch,
    ThumbprintMismatch,
)
from allocation.identity import DeviceIdentity, IdentitySource, Sourced
from devstack.certificates import IssuedCertificate, TestCertificateAuthority
from devstack.dps_requests import allocation_request

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
NOT_BEFORE = NOW - timedelta(days=30)
NOT_AFTER = NOW + timedelta(days=365)
CA_NAME = "Contoso Device CA, Ltd"
CA_RFC4514 = "CN=Contoso Device CA\\, Ltd"
X509 = "deviceRuntimeContext.x509"
CERT_FIELD = f"{X509}.clientCertificate"
EAST = "hub-us-east.azure-devices.net"

CERT = IdentitySource.CERTIFICATE
INFO = IdentitySource.CERTIFICATE_INFO
REG = IdentitySource.REGISTRATION_ID


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> TestCertificateAuthority:
    return TestCertificateAuthority(name=CA_NAME)


@pytest.fixture(scope="module")
def device(authority: TestCertificateAuthority) -> IssuedCertificate:
    return authority.issue_device(
        "dev-1",
        serial_number="SN-1",
        organization="Contoso",
        organizational_units=("Line-A", "Line-B"),
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
    )


@pytest.fixture(scope="module")
def baseline(device: IssuedCertificate) -> DeviceIdentity:
    """What the best-evidenced shape, {"clientCertificate": <base64 DER>}, yields."""
    return identify("dev-1", {"clientCertificate": device.der_base64})


def issue(
    authority: TestCertificateAuthority, common_name: str = "dev-1", **kwargs: Any
) -> IssuedCertificate:
    kwargs.setdefault("not_before", NOT_BEFORE)
    kwargs.setdefault("not_after", NOT_AFTER)
    return authority.issue_device(common_name, **kwargs)


def der(cert: IssuedCertificate) -> bytes:
    return cert.certificate.public_bytes(serialization.Encoding.DER)


def parse(body: dict[str, Any]) -> AllocationRequest:
    return AllocationRequest.model_validate(body)


def identify_request(
    request: AllocationRequest, *, now: datetime = NOW, clock_skew: timedelta = SKEW
) -> DeviceIdentity:
    return read_identity(
        request.device_runtime_context, request.enrollment, now=now, clock_skew=clock_skew
    )


def identify(
    registration_id: str,
    x509_section: dict[str, Any],
    *,
    now: datetime = NOW,
    clock_skew: timedelta = SKEW,
) -> DeviceIdentity:
    request = parse(allocation_request(registration_id, x509=x509_section))
    return identify_request(request, now=now, clock_skew=clock_skew)


def refusal(
    registration_id: str,
    x509_section: dict[str, Any],
    *,
    now: datetime = NOW,
    clock_skew: timedelta = SKEW,
) -> AttestationError:
    with pytest.raises(AttestationError) as caught:
        identify(registration_id, x509_section, now=now, clock_skew=clock_skew)
    return caught.value


def with_source(identity: DeviceIdentity, source: IdentitySource) -> DeviceIdentity:
    """The same values, every certificate-derived field attributed to `source`."""
    changes: dict[str, Any] = {
        field.name: Sourced(value.value, source)
        for field in dataclasses.fields(identity)
        if field.name != "device_id" and isinstance(value := getattr(identity, field.name), Sourced)
    }
    return dataclasses.replace(identity, **changes)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dps_info(cert: IssuedCertificate, subject: str, issuer: str) -> dict[str, Any]:
    """DPS's X509CertificateInfo naming."""
    return {
        "subjectName": subject,
        "sha1Thumbprint": cert.sha1_thumbprint,
        "sha256Thumbprint": cert.sha256_thumbprint,
        "issuerName": issuer,
        "notBeforeUtc": iso(cert.certificate.not_valid_before_utc),
        "notAfterUtc": iso(cert.certificate.not_valid_after_utc),
        "serialNumber": f"{cert.certificate.serial_number:X}",
        "version": 3,
    }


# How .NET prints the device's names: most specific (last ASN.1) RDN first, ", " between.
DEVICE_SUBJECT_DOTNET = "OU=Line-B, OU=Line-A, O=Contoso, SERIALNUMBER=SN-1, CN=dev-1"
ISSUER_DOTNET = 'CN="Contoso Device CA, Ltd"'


# --- 1. {"clientCertificate": "<base64 DER>"} ----------------------------------------------


def test_base64_der_certificate_yields_every_field_from_the_certificate(
    device: IssuedCertificate,
) -> None:
    identity = identify("dev-1", {"clientCertificate": device.der_base64})

    assert identity.registration_id == "dev-1"
    assert identity.attestation_kind == "x509"
    assert identity.device_id == Sourced("dev-1", REG)
    assert identity.common_name == Sourced("dev-1", CERT)
    assert identity.subject_serial_number == Sourced("SN-1", CERT)
    assert identity.organization == Sourced("Contoso", CERT)
    assert identity.organizational_units == Sourced(("Line-A", "Line-B"), CERT)
    assert identity.issuer == Sourced(CA_RFC4514, CERT)
    assert identity.certificate_serial == Sourced(f"{device.certificate.serial_number:X}", CERT)
    assert identity.sha1_thumbprint == Sourced(
        hashlib.sha1(der(device)).hexdigest().upper(),  # noqa: S324 - a thumbprint
        CERT,
    )
    assert identity.sha256_thumbprint == Sourced(
        hashlib.sha256(der(device)).hexdigest().upper(), CERT
    )
    assert identity.not_before == Sourced(NOT_BEFORE, CERT)
    assert identity.not_after == Sourced(NOT_AFTER, CERT)
    assert identity.thumbprint == hashlib.sha256(der(device)).hexdigest().upper()


def test_provenance_lists_every_certificate_field(baseline: DeviceIdentity) -> None:
    assert baseline.provenance() == {
        "device_id": "registrationId",
        "common_name": "certificate",
        "subject_serial_number": "certificate",
        "organization": "certificate",
        "organizational_units": "certificate",
        "issuer": "certificate",
        "certificate_serial": "certificate",
        "sha1_thumbprint": "certificate",
        "sha256_thumbprint": "certificate",
        "not_before": "certificate",
        "not_after": "certificate",
    }


def test_certificate_without_optional_subject_attributes_leaves_them_unset(
    authority: TestCertificateAuthority,
) -> None:
    identity = identify(
        "dev-1", {"clientCertificate": issue(authority, organization=None).der_base64}
    )

    assert identity.common_name == Sourced("dev-1", CERT)
    assert identity.subject_serial_number is None
    assert identity.organization is None
    assert identity.organizational_units is None
    assert "organization" not in identity.provenance()


# --- 2. other certificate encodings and key spellings --------------------------------------


def _wrapped(text: str, width: int = 64, newline: str = "\n") -> str:
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


ENCODINGS: dict[str, Callable[[IssuedCertificate, TestCertificateAuthority], str]] = {
    "pem": lambda cert, ca: cert.pem,
    "pem-crlf": lambda cert, ca: cert.pem.replace("\n", "\r\n"),
    "pem-chain-leaf-first": lambda cert, ca: cert.pem + ca.issued.pem,
    "pem-with-surrounding-text": lambda cert, ca: "subject=dev-1\n" + cert.pem + "\n\n",
    "base64-of-pem": lambda cert, ca: base64.b64encode(cert.pem.encode()).decode(),
    "base64-of-pem-chain": lambda cert, ca: base64.b64encode(
        (cert.pem + ca.issued.pem).encode()
    ).decode(),
    "base64-wrapped-lf": lambda cert, ca: _wrapped(cert.der_base64),
    "base64-wrapped-crlf-76": lambda cert, ca: _wrapped(cert.der_base64, 76, "\r\n"),
    "base64-with-tabs-and-spaces": lambda cert, ca: (
        "  \t" + _wrapped(cert.der_base64, 10, " \t ") + "\n "
    ),
    "base64-without-padding": lambda cert, ca: cert.der_base64.rstrip("="),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_certificate_encoding_reads_the_same_identity(
    encoding: str,
    device: IssuedCertificate,
    authority: TestCertificateAuthority,
    baseline: DeviceIdentity,
) -> None:
    text = ENCODINGS[encoding](device, authority)

    assert identify("dev-1", {"clientCertificate": text}) == baseline


@pytest.fixture(scope="module")
def url_safe_device(authority: TestCertificateAuthority) -> IssuedCertificate:
    """A certificate whose base64 needs padding and has '+' or '/', so URL-safe differs."""
    for _ in range(200):
        cert = issue(authority)
        standard = cert.der_base64
        if standard.endswith("=") and ("+" in standard or "/" in standard):
            return cert
    raise AssertionError("no certificate with padded base64 containing '+' or '/'")


def test_url_safe_base64_without_padding_is_read(url_safe_device: IssuedCertificate) -> None:
    url_safe = base64.urlsafe_b64encode(der(url_safe_device)).decode().rstrip("=")
    assert "-" in url_safe or "_" in url_safe

    identity = identify("dev-1", {"clientCertificate": url_safe})

    assert identity.sha256_thumbprint == Sourced(url_safe_device.sha256_thumbprint, CERT)


@pytest.mark.parametrize(
    "key",
    ["clientCertificate", "ClientCertificate", "CLIENTCERTIFICATE", "certificate", "Certificate"],
)
def test_certificate_key_is_found_in_any_casing_and_spelling(
    key: str, device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    assert identify("dev-1", {key: device.der_base64}) == baseline


@pytest.mark.parametrize("key", ["ClientCertificate", "certificate"])
def test_unreadable_certificate_error_names_the_key_as_sent(key: str) -> None:
    error = refusal("dev-1", {key: "not a certificate"})

    assert isinstance(error, CertificateUnreadable)
    assert error.field == f"{X509}.{key}"


# --- 3. certificate info objects -----------------------------------------------------------


@pytest.mark.parametrize(
    ("wrap", "path"),
    [
        (lambda info: info, X509),
        (lambda info: {"certificateInfo": info}, f"{X509}.certificateInfo"),
        (lambda info: {"clientCertificateInfo": info}, f"{X509}.clientCertificateInfo"),
        (lambda info: {"CertificateInfo": info}, f"{X509}.CertificateInfo"),
    ],
    ids=["flat", "certificateInfo", "clientCertificateInfo", "CertificateInfo"],
)
def test_dps_info_object_reads_the_same_values_as_the_certificate(
    wrap: Any, path: str, device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    info = dps_info(device, DEVICE_SUBJECT_DOTNET, ISSUER_DOTNET)

    identity = identify("dev-1", wrap(info))

    assert identity == with_source(baseline, INFO)
    # Errors point at the exact key that carried the value.
    expired = refusal("dev-1", wrap(info), now=NOT_AFTER + timedelta(days=1))
    assert isinstance(expired, CertificateExpired)
    assert expired.field == f"{path}.notAfterUtc"


def test_dotnet_naming_reads_subject_issuer_thumbprint_and_validity(
    device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    info = {
        "subject": DEVICE_SUBJECT_DOTNET,
        "issuer": ISSUER_DOTNET,
        "thumbprint": device.sha1_thumbprint,
        "notBefore": iso(NOT_BEFORE),
        "notAfter": iso(NOT_AFTER),
        "serialNumber": f"{device.certificate.serial_number:X}",
    }

    identity = identify("dev-1", {"certificateInfo": info})

    assert identity == dataclasses.replace(with_source(baseline, INFO), sha256_thumbprint=None)
    assert identity.thumbprint == device.sha1_thumbprint


def test_dotnet_style_subject_with_quoted_organization_and_serialnumber() -> None:
    info = {"subjectName": 'CN=dev-1, SERIALNUMBER=SN-1, O="Contoso, Ltd"'}

    identity = identify("dev-1", {"certificateInfo": info})

    assert identity.common_name == Sourced("dev-1", INFO)
    assert identity.subject_serial_number == Sourced("SN-1", INFO)
    assert identity.organization == Sourced("Contoso, Ltd", INFO)
    assert identity.organizational_units is None
    assert identity.provenance() == {
        "device_id": "registrationId",
        "common_name": "certificateInfo",
        "subject_serial_number": "certificateInfo",
        "organization": "certificateInfo",
    }


def test_info_hex_values_are_normalised_to_upper_case_without_colons() -> None:
    info = {
        "sha1Thumbprint": "ab:cd:ef:01",
        "sha256Thumbprint": " 0a 0b\t0c ",
        "serialNumber": "0f:e1",
    }

    identity = identify("dev-1", info)

    assert identity.sha1_thumbprint == Sourced("ABCDEF01", INFO)
    assert identity.sha256_thumbprint == Sourced("0A0B0C", INFO)
    # Leading zeros dropped, as in the certificate's own integer serial (.NET prints 00..).
    assert identity.certificate_serial == Sourced("FE1", INFO)
    assert identity.common_name == Sourced("dev-1", REG)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-01-01T00:00:00Z", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T00:00:00.1234567Z", datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2027-01-01T02:00:00+02:00", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T00:00:00", datetime(2027, 1, 1, tzinfo=UTC)),  # naive means UTC
    ],
)
def test_info_timestamps_in_iso_8601_forms_are_read_as_aware_utc(
    value: str, expected: datetime
) -> None:
    identity = identify("dev-1", {"certificateInfo": {"notAfterUtc": value}})

    assert identity.not_after == Sourced(expected, INFO)
    assert identity.not_after.value.utcoffset() is not None


def test_info_printed_from_the_certificate_itself_agrees_with_the_certificate(
    authority: TestCertificateAuthority,
) -> None:
    cert = issue(
        authority,
        serial_number="SN-42",
        organization='Contoso, "Ltd" + Co; <x> #1 \\ =',
        organizational_units=(" leading", "trailing ", "#hash", "Müller", "传感器", "🚀"),
    )
    overrides = {NameOID.SERIAL_NUMBER: "SERIALNUMBER"}
    info = dps_info(
        cert,
        cert.certificate.subject.rfc4514_string(overrides),
        cert.certificate.issuer.rfc4514_string(overrides),
    )

    from_certificate = identify("dev-1", {"clientCertificate": cert.der_base64})
    from_info = identify("dev-1", {"certificateInfo": info})

    assert from_info == with_source(from_certificate, INFO)


# --- 4. certificate and info together ------------------------------------------------------


def test_certificate_wins_over_info_as_the_source(
    device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    info = dps_info(device, DEVICE_SUBJECT_DOTNET, ISSUER_DOTNET)

    identity = identify("dev-1", {"clientCertificate": device.der_base64, "certificateInfo": info})

    assert identity == baseline


def test_a_summary_cannot_add_to_the_certificates_subject(
    authority: TestCertificateAuthority,
) -> None:
    """A serial (or O) the certificate lacks, supplied by the unverified summary, would let a
    caller aim the certificate at another device's asset: the two must agree."""
    cert = issue(authority, organization=None)
    info = {"subjectName": "CN=dev-1, O=Fabrikam, SERIALNUMBER=SN-INFO"}

    with pytest.raises(CertificateSummaryMismatch) as caught:
        identify("dev-1", {"clientCertificate": cert.der_base64, "certificateInfo": info})
    assert caught.value.field == f"{X509}.certificateInfo.subjectName"


def test_a_summary_that_agrees_with_the_certificate_passes(
    authority: TestCertificateAuthority,
) -> None:
    cert = issue(authority, organization="Fabrikam", serial_number="SN-1")
    info = {
        "subjectName": "CN=dev-1, O=Fabrikam, SERIALNUMBER=SN-1",
        "serialNumber": format(cert.certificate.serial_number, "x"),
    }
    identity = identify("dev-1", {"clientCertificate": cert.der_base64, "certificateInfo": info})
    assert identity.subject_serial_number == Sourced("SN-1", CERT)


@pytest.mark.parametrize(
    ("info", "field"),
    [
        ({"subjectName": "CN=dev-1, O=Fabrikam, SERIALNUMBER=SN-2"}, "subjectName"),
        ({"serialNumber": "0BADC0DE"}, "serialNumber"),
    ],
)
def test_a_summary_that_disagrees_with_the_certificate_is_refused(
    authority: TestCertificateAuthority, info: dict[str, str], field: str
) -> None:
    cert = issue(authority, organization="Fabrikam", serial_number="SN-1")
    with pytest.raises(CertificateSummaryMismatch) as caught:
        identify("dev-1", {"clientCertificate": cert.der_base64, "certificateInfo": info})
    assert caught.value.field == f"{X509}.certificateInfo.{field}"


def test_matching_thumbprints_pass_in_lower_case_with_colons(
    device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    def colons(hex_digits: str) -> str:
        return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2)).lower()

    info = {
        "sha1Thumbprint": colons(device.sha1_thumbprint),
        "sha256Thumbprint": colons(device.sha256_thumbprint),
    }

    for section in (
        {"clientCertificate": device.der_base64, "certificateInfo": info},
        {"clientCertificate": device.der_base64, **info},
    ):
        assert identify("dev-1", section) == baseline


WRONG_SHA1 = "00" * 20
WRONG_SHA256 = "11" * 32


@pytest.mark.parametrize(
    ("info_key", "thumbprint_key", "wrong", "field"),
    [
        (None, "sha1Thumbprint", WRONG_SHA1, f"{X509}.sha1Thumbprint"),
        (None, "sha256Thumbprint", WRONG_SHA256, f"{X509}.sha256Thumbprint"),
        ("certificateInfo", "sha1Thumbprint", WRONG_SHA1, f"{X509}.certificateInfo.sha1Thumbprint"),
        (
            "certificateInfo",
            "sha256Thumbprint",
            WRONG_SHA256,
            f"{X509}.certificateInfo.sha256Thumbprint",
        ),
        (
            "clientCertificateInfo",
            "sha256Thumbprint",
            WRONG_SHA256,
            f"{X509}.clientCertificateInfo.sha256Thumbprint",
        ),
    ],
)
def test_wrong_thumbprint_in_info_is_a_mismatch_naming_the_info_field(
    info_key: str | None,
    thumbprint_key: str,
    wrong: str,
    field: str,
    device: IssuedCertificate,
) -> None:
    info = {thumbprint_key: wrong}
    section: dict[str, Any] = {"clientCertificate": device.der_base64}
    section.update({info_key: info} if info_key else info)

    error = refusal("dev-1", section)

    assert isinstance(error, ThumbprintMismatch)
    assert error.field == field
    assert "does not match the thumbprint of the client certificate" in str(error)


@pytest.mark.parametrize("thumbprint_key", ["thumbprint", "SHA1Thumbprint", "Sha256Thumbprint"])
def test_thumbprint_mismatch_names_the_key_the_info_object_actually_used(
    thumbprint_key: str, device: IssuedCertificate
) -> None:
    wrong = WRONG_SHA256 if "256" in thumbprint_key else WRONG_SHA1
    section = {"clientCertificate": device.der_base64, "certificateInfo": {thumbprint_key: wrong}}

    error = refusal("dev-1", section)

    assert isinstance(error, ThumbprintMismatch)
    assert error.field == f"{X509}.certificateInfo.{thumbprint_key}"


def test_thumbprint_of_the_signing_ca_in_certificate_info_is_a_mismatch(
    device: IssuedCertificate, authority: TestCertificateAuthority
) -> None:
    info = {"sha256Thumbprint": authority.issued.sha256_thumbprint}

    error = refusal("dev-1", {"clientCertificate": device.der_base64, "certificateInfo": info})

    assert isinstance(error, ThumbprintMismatch)
    assert error.field == f"{X509}.certificateInfo.sha256Thumbprint"


# --- 5. signingCertificateInfo describes the CA, not the device -----------------------------


def test_signing_certificate_info_alone_is_not_the_device_identity(
    authority: TestCertificateAuthority,
) -> None:
    section = {
        "enrollmentGroupId": "devstack-x509-group",
        "signingCertificateInfo": dps_info(
            authority.issued, "CN=Contoso Device CA", "CN=Contoso Device CA"
        ),
    }

    identity = identify("dev-1", section)

    assert identity == DeviceIdentity(
        registration_id="dev-1",
        device_id=Sourced("dev-1", REG),
        attestation_kind="x509",
        common_name=Sourced("dev-1", REG),
    )


def test_expired_signing_certificate_info_does_not_refuse_the_device(
    device: IssuedCertificate, authority: TestCertificateAuthority, baseline: DeviceIdentity
) -> None:
    signing = dps_info(authority.issued, "CN=Contoso Device CA", "CN=Contoso Device CA")
    signing["notAfterUtc"] = iso(NOW - timedelta(days=400))

    section = {"clientCertificate": device.der_base64, "signingCertificateInfo": signing}

    assert identify("dev-1", section) == baseline


# --- 6. no certificate material at all -----------------------------------------------------


def _context_without_x509(**attestation: Any) -> dict[str, Any]:
    body = allocation_request("dev-1")
    del body["deviceRuntimeContext"]["x509"]
    body["deviceRuntimeContext"].update(attestation)
    return body


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (allocation_request("dev-1", x509={}), "x509"),
        (_context_without_x509(), "none"),
        (_context_without_x509(symmetricKey={}), "symmetricKey"),
        (
            _context_without_x509(
                tpm={"endorsementKey": "AToAAQALAAMAsgAgg3GXZ0SEs", "storageRootKey": "ARgAAQAL"}
            ),
            "tpm",
        ),
    ],
    ids=["x509-empty", "no-attestation", "symmetricKey", "tpm"],
)
def test_without_certificate_material_the_identity_is_the_registration_id(
    body: dict[str, Any], kind: str
) -> None:
    identity = identify_request(parse(body))

    assert identity == DeviceIdentity(
        registration_id="dev-1",
        device_id=Sourced("dev-1", REG),
        attestation_kind=kind,  # type: ignore[arg-type]
        common_name=Sourced("dev-1", REG),
    )
    assert identity.provenance() == {"device_id": "registrationId", "common_name": "registrationId"}
    assert identity.thumbprint is None


# --- 7. device id --------------------------------------------------------------------------


def _individual(device_id: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"registrationId": "dev-1", "attestation": {"type": "x509"}}
    if device_id is not None:
        record["deviceId"] = device_id
    return record


def test_individual_enrollment_device_id_comes_from_the_enrollment(
    device: IssuedCertificate,
) -> None:
    body = allocation_request("dev-1", x509={"clientCertificate": device.der_base64})
    del body["enrollmentGroup"]
    body["individualEnrollment"] = _individual("boiler-7")

    identity = identify_request(parse(body))

    assert identity.device_id == Sourced("boiler-7", IdentitySource.ENROLLMENT)
    assert identity.registration_id == "dev-1"
    assert identity.provenance()["device_id"] == "enrollment"


def test_individual_enrollment_without_device_id_uses_the_registration_id() -> None:
    body = allocation_request("dev-1")
    del body["enrollmentGroup"]
    body["individualEnrollment"] = _individual(None)

    assert identify_request(parse(body)).device_id == Sourced("dev-1", REG)


def test_group_enrollment_device_id_is_the_registration_id(baseline: DeviceIdentity) -> None:
    assert baseline.device_id == Sourced("dev-1", REG)


# --- 8. rejections -------------------------------------------------------------------------


def test_certificate_cn_other_than_registration_id_is_refused(
    authority: TestCertificateAuthority,
) -> None:
    error = refusal("dev-1", {"clientCertificate": issue(authority, "dev-2").der_base64})

    assert isinstance(error, CommonNameMismatch)
    assert error.field == CERT_FIELD
    assert "CN 'dev-2', registrationId 'dev-1'" in error.detail
    # The answer names the rule, never the values the request carried.
    assert error.public == f"{CERT_FIELD}: subject CN does not match registrationId"


def test_cn_that_only_extends_the_registration_id_is_refused(
    authority: TestCertificateAuthority,
) -> None:
    error = refusal("dev-10", {"clientCertificate": issue(authority, "dev-1").der_base64})

    assert isinstance(error, CommonNameMismatch)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"subjectName": "CN=dev-2"}, f"{X509}.subjectName"),
        (
            {"certificateInfo": {"subjectName": "CN=dev-2, O=Contoso"}},
            f"{X509}.certificateInfo.subjectName",
        ),
        (
            {"clientCertificateInfo": {"subject": "CN=dev-2"}},
            f"{X509}.clientCertificateInfo.subject",
        ),
    ],
)
def test_info_cn_other_than_registration_id_is_refused(section: dict[str, Any], field: str) -> None:
    error = refusal("dev-1", section)

    assert isinstance(error, CommonNameMismatch)
    assert error.field == field
    assert "'dev-2'" in str(error)


def test_cn_equal_to_registration_id_ignoring_case_is_accepted(
    authority: TestCertificateAuthority,
) -> None:
    identity = identify("sensor-1", {"clientCertificate": issue(authority, "Sensor-1").der_base64})

    assert identity.common_name == Sourced("Sensor-1", CERT)
    assert identity.registration_id == "sensor-1"
    assert identity.device_id == Sourced("sensor-1", REG)


def test_expired_certificate_is_refused(authority: TestCertificateAuthority) -> None:
    expired_at = NOW - timedelta(days=1)
    cert = issue(authority, not_before=NOW - timedelta(days=400), not_after=expired_at)

    error = refusal("dev-1", {"clientCertificate": cert.der_base64})

    assert isinstance(error, CertificateExpired)
    assert error.field == CERT_FIELD
    assert "certificate expired at 2026-05-31T12:00:00+00:00" in str(error)


def test_certificate_not_yet_valid_is_refused(authority: TestCertificateAuthority) -> None:
    cert = issue(authority, not_before=NOW + timedelta(days=1))

    error = refusal("dev-1", {"clientCertificate": cert.der_base64})

    assert isinstance(error, CertificateNotYetValid)
    assert error.field == CERT_FIELD
    assert "certificate is not valid before 2026-06-02T12:00:00+00:00" in str(error)


@pytest.mark.parametrize(
    ("not_after_offset", "skew", "valid"),
    [
        (timedelta(minutes=-4), timedelta(minutes=5), True),
        (timedelta(minutes=-5), timedelta(minutes=5), True),  # exactly at the edge
        (timedelta(minutes=-5, seconds=-1), timedelta(minutes=5), False),
        (timedelta(0), timedelta(0), True),
        (timedelta(seconds=-1), timedelta(0), False),
        (timedelta(minutes=-4), timedelta(minutes=1), False),
    ],
)
def test_clock_skew_tolerates_a_just_expired_certificate(
    not_after_offset: timedelta, skew: timedelta, valid: bool, authority: TestCertificateAuthority
) -> None:
    cert = issue(authority, not_before=NOW - timedelta(days=1), not_after=NOW + not_after_offset)
    section = {"clientCertificate": cert.der_base64}

    if valid:
        assert identify("dev-1", section, clock_skew=skew).not_after == Sourced(
            NOW + not_after_offset, CERT
        )
    else:
        assert isinstance(refusal("dev-1", section, clock_skew=skew), CertificateExpired)


@pytest.mark.parametrize(
    ("not_before_offset", "skew", "valid"),
    [
        (timedelta(minutes=4), timedelta(minutes=5), True),
        (timedelta(minutes=5), timedelta(minutes=5), True),  # exactly at the edge
        (timedelta(minutes=5, seconds=1), timedelta(minutes=5), False),
        (timedelta(0), timedelta(0), True),
        (timedelta(seconds=1), timedelta(0), False),
    ],
)
def test_clock_skew_tolerates_a_certificate_valid_just_after_now(
    not_before_offset: timedelta,
    skew: timedelta,
    valid: bool,
    authority: TestCertificateAuthority,
) -> None:
    cert = issue(authority, not_before=NOW + not_before_offset)
    section = {"clientCertificate": cert.der_base64}

    if valid:
        assert identify("dev-1", section, clock_skew=skew).not_before == Sourced(
            NOW + not_before_offset, CERT
        )
    else:
        assert isinstance(refusal("dev-1", section, clock_skew=skew), CertificateNotYetValid)


@pytest.mark.parametrize(
    ("section", "error_class", "field", "moment"),
    [
        (
            {"certificateInfo": {"subjectName": "CN=dev-1", "notAfterUtc": "2026-05-01T00:00:00Z"}},
            CertificateExpired,
            f"{X509}.certificateInfo.notAfterUtc",
            "2026-05-01T00:00:00+00:00",
        ),
        (
            {"notAfterUtc": "2026-06-01T11:54:59Z"},
            CertificateExpired,
            f"{X509}.notAfterUtc",
            "2026-06-01T11:54:59+00:00",
        ),
        (
            {"clientCertificateInfo": {"notBefore": "2026-06-01T12:05:01Z"}},
            CertificateNotYetValid,
            f"{X509}.clientCertificateInfo.notBefore",
            "2026-06-01T12:05:01+00:00",
        ),
    ],
)
def test_validity_from_info_is_enforced(
    section: dict[str, Any], error_class: type[AttestationError], field: str, moment: str
) -> None:
    error = refusal("dev-1", section)

    assert type(error) is error_class
    assert error.field == field
    assert moment in str(error)


def test_info_validity_within_the_skew_passes() -> None:
    identity = identify("dev-1", {"notAfterUtc": "2026-06-01T11:55:00Z"})

    assert identity.not_after == Sourced(datetime(2026, 6, 1, 11, 55, tzinfo=UTC), INFO)


def _spki_base64(cert: IssuedCertificate) -> str:
    return base64.b64encode(
        cert.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()


UNREADABLE: dict[str, Callable[[IssuedCertificate], str]] = {
    "garbage": lambda cert: "not base64!!",
    "base64-of-text": lambda cert: base64.b64encode(b"hello, this is no certificate").decode(),
    "public-key-der": _spki_base64,
    "truncated-der": lambda cert: base64.b64encode(der(cert)[:-20]).decode(),
    "der-with-trailing-bytes": lambda cert: base64.b64encode(der(cert) + b"\x00\x00").decode(),
    "private-key-pem": lambda cert: cert.key_pem,
    "pem-with-bad-body": lambda cert: (
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ),
    "truncated-pem": lambda cert: cert.pem[: len(cert.pem) // 2],
    "base64-length-1-mod-4": lambda cert: cert.der_base64.rstrip("=") + "A" * 3,
    "non-ascii": lambda cert: cert.der_base64[:10] + "é" + cert.der_base64[10:],
}


@pytest.mark.parametrize("shape", sorted(UNREADABLE))
def test_text_that_is_not_a_certificate_is_unreadable(
    shape: str, device: IssuedCertificate
) -> None:
    error = refusal("dev-1", {"clientCertificate": UNREADABLE[shape](device)})

    assert isinstance(error, CertificateUnreadable)
    assert error.field == CERT_FIELD
    assert "is not a base64 DER or PEM X.509 certificate" in str(error)


@pytest.mark.parametrize(
    "value",
    ["", "   \r\n\t", 12345, 1.5, True, {"der": "MIIB"}, ["MIIB"]],
    ids=["empty", "whitespace", "int", "float", "bool", "object", "array"],
)
def test_empty_or_non_string_certificate_is_unreadable(value: Any) -> None:
    error = refusal("dev-1", {"clientCertificate": value})

    assert isinstance(error, CertificateUnreadable)
    assert error.field == CERT_FIELD
    assert "must be a base64 DER or PEM certificate string" in str(error)


@pytest.mark.parametrize("value", ["CN=dev-1", ["CN=dev-1"], 5, True])
@pytest.mark.parametrize("key", ["certificateInfo", "clientCertificateInfo"])
def test_info_that_is_not_an_object_is_refused(key: str, value: Any) -> None:
    error = refusal("dev-1", {key: value})

    assert type(error) is AttestationError
    assert error.field == f"{X509}.{key}"
    assert "must be an object" in str(error)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("notAfterUtc", "next tuesday", "must be an ISO 8601 timestamp"),
        ("notAfterUtc", "2026-13-01T00:00:00Z", "must be an ISO 8601 timestamp"),
        ("notBeforeUtc", "6/1/2026 12:00:00 PM", "must be an ISO 8601 timestamp"),
        ("notBefore", "", "must be an ISO 8601 timestamp"),
        ("sha1Thumbprint", "XYZ", "must be hexadecimal"),
        ("sha1Thumbprint", "", "must be hexadecimal"),
        ("sha1Thumbprint", " : ", "must be hexadecimal"),
        ("sha256Thumbprint", "0x1234", "must be hexadecimal"),
        ("sha256Thumbprint", "A" * 129, "must be hexadecimal"),
        ("thumbprint", "12 34 zz", "must be hexadecimal"),
        ("serialNumber", "SN-1", "must be hexadecimal"),
        ("subjectName", 42, "must be a string"),
        ("issuerName", {"CN": "ca"}, "must be a string"),
        ("sha1Thumbprint", ["AA"], "must be a string"),
        ("notAfterUtc", 1735689600, "must be a string"),
        ("subjectName", "CN=dev-1, Foo=bar", "is not a distinguished name (unknown attribute"),
        ("issuer", 'CN="unterminated', "is not a distinguished name (unterminated quoted"),
        ("subject", "CN=dev-1, C=USA", "is not a distinguished name (2.5.4.6"),
    ],
)
def test_malformed_info_field_is_refused_naming_the_field(
    key: str, value: Any, message: str
) -> None:
    error = refusal("dev-1", {"certificateInfo": {key: value}})

    assert type(error) is AttestationError
    assert error.field == f"{X509}.certificateInfo.{key}"
    assert message in str(error)


def test_null_info_fields_count_as_absent() -> None:
    identity = identify("dev-1", {"certificateInfo": {"subjectName": None, "notAfterUtc": None}})

    assert identity.common_name == Sourced("dev-1", REG)
    assert identity.not_after is None


def _subject(*attributes: x509.NameAttribute[str] | x509.RelativeDistinguishedName) -> x509.Name:
    rdns = [
        item
        if isinstance(item, x509.RelativeDistinguishedName)
        else x509.RelativeDistinguishedName([item])
        for item in attributes
    ]
    return x509.Name(rdns)


CN = NameOID.COMMON_NAME
SERIAL = NameOID.SERIAL_NUMBER
ORG = NameOID.ORGANIZATION_NAME


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            [x509.NameAttribute(CN, "dev-1"), x509.NameAttribute(CN, "dev-2")],
            "subject has 2 different common names",
        ),
        (
            [x509.NameAttribute(CN, "dev-1"), x509.NameAttribute(CN, "DEV-1")],
            "subject has 2 different common names",
        ),
        (
            [
                x509.NameAttribute(CN, "dev-1"),
                x509.NameAttribute(SERIAL, "SN-1"),
                x509.NameAttribute(SERIAL, "SN-2"),
            ],
            "subject has 2 different serialNumber attributes",
        ),
        (
            [
                x509.NameAttribute(CN, "dev-1"),
                x509.NameAttribute(ORG, "Contoso"),
                x509.NameAttribute(ORG, "Fabrikam"),
            ],
            "subject has 2 different organization names",
        ),
        (
            [
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(CN, "dev-1"), x509.NameAttribute(CN, "dev-2")]
                )
            ],
            "subject has 2 different common names",
        ),
    ],
    ids=["two-cns", "cns-differing-in-case", "two-serials", "two-orgs", "cns-in-one-rdn"],
)
def test_certificate_subject_with_conflicting_attributes_is_ambiguous(
    attributes: list[Any], message: str, authority: TestCertificateAuthority
) -> None:
    cert = issue(authority, subject=_subject(*attributes))

    error = refusal("dev-1", {"clientCertificate": cert.der_base64})

    assert isinstance(error, AmbiguousSubject)
    assert error.field == CERT_FIELD
    assert message in str(error)


def test_info_subject_with_two_common_names_is_ambiguous() -> None:
    error = refusal("dev-1", {"certificateInfo": {"subjectName": "CN=dev-1, CN=dev-2"}})

    assert isinstance(error, AmbiguousSubject)
    assert error.field == f"{X509}.certificateInfo.subjectName"
    assert "subject has 2 different common names" in str(error)


def test_repeated_identical_common_name_is_not_ambiguous(
    authority: TestCertificateAuthority,
) -> None:
    subject = _subject(x509.NameAttribute(CN, "dev-1"), x509.NameAttribute(CN, "dev-1"))

    identity = identify(
        "dev-1", {"clientCertificate": issue(authority, subject=subject).der_base64}
    )

    assert identity.common_name == Sourced("dev-1", CERT)


@pytest.mark.parametrize(
    "serial",
    ["SN\x01", "SN\t1", "SN\x7f", "A" * 129, "SN-é"],
    ids=["control", "tab", "delete", "129-chars", "non-ascii"],
)
def test_certificate_subject_serial_number_must_be_short_printable_ascii(
    serial: str, authority: TestCertificateAuthority
) -> None:
    subject = _subject(
        x509.NameAttribute(CN, "dev-1"),
        x509.NameAttribute(SERIAL, serial, _type=_ASN1Type.UTF8String),
    )
    cert = issue(authority, subject=subject)

    error = refusal("dev-1", {"clientCertificate": cert.der_base64})

    assert type(error) is AttestationError
    assert error.field == CERT_FIELD
    assert "subject serialNumber must be 1-128 printable ASCII chars" in str(error)


@pytest.mark.parametrize(
    "subject_name", ["CN=dev-1, SERIALNUMBER=SN\\07", "CN=dev-1, SERIALNUMBER=" + "7" * 129]
)
def test_info_subject_serial_number_must_be_short_printable_ascii(subject_name: str) -> None:
    error = refusal("dev-1", {"certificateInfo": {"subjectName": subject_name}})

    assert type(error) is AttestationError
    assert error.field == f"{X509}.certificateInfo.subjectName"
    assert "subject serialNumber must be 1-128 printable ASCII chars" in str(error)


def test_subject_serial_number_of_128_printable_chars_is_accepted(
    authority: TestCertificateAuthority,
) -> None:
    serial = ("SN-0123456789 ~!{}" * 8)[:128]
    subject = _subject(
        x509.NameAttribute(CN, "dev-1"),
        x509.NameAttribute(SERIAL, serial, _type=_ASN1Type.UTF8String),
    )
    cert = issue(authority, subject=subject)

    identity = identify("dev-1", {"clientCertificate": cert.der_base64})

    assert identity.subject_serial_number == Sourced(serial, CERT)


def test_rfc4514_specials_and_utf8_in_subject_are_read_exactly(
    authority: TestCertificateAuthority,
) -> None:
    organization = 'Contoso, "Ltd" + Co; <x> #1 \\ ='
    units = (" leading", "trailing ", "#hash", "Müller GmbH", "传感器 工厂", "🚀")
    cert = issue(authority, organization=organization, organizational_units=units)

    identity = identify("dev-1", {"clientCertificate": cert.der_base64})

    assert identity.organization == Sourced(organization, CERT)
    assert identity.organizational_units == Sourced(units, CERT)


def test_multi_valued_rdn_in_certificate_subject_is_read(
    authority: TestCertificateAuthority,
) -> None:
    subject = _subject(
        x509.NameAttribute(ORG, "Contoso"),
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(CN, "dev-1"), x509.NameAttribute(SERIAL, "SN-9")]
        ),
    )

    identity = identify(
        "dev-1", {"clientCertificate": issue(authority, subject=subject).der_base64}
    )

    assert identity.common_name == Sourced("dev-1", CERT)
    assert identity.subject_serial_number == Sourced("SN-9", CERT)
    assert identity.organization == Sourced("Contoso", CERT)


def test_issuer_with_specials_is_printed_as_rfc4514_and_round_trips_through_info(
    authority: TestCertificateAuthority,
) -> None:
    odd_ca = TestCertificateAuthority(name='#Root; "CA" + Co <Ü> ')
    cert = issue(odd_ca)

    from_certificate = identify("dev-1", {"clientCertificate": cert.der_base64})
    assert from_certificate.issuer == Sourced('CN=\\#Root\\; \\"CA\\" \\+ Co \\<Ü\\>\\ ', CERT)

    from_info = identify("dev-1", {"issuerName": from_certificate.issuer.value})
    assert from_info.issuer == Sourced(from_certificate.issuer.value, INFO)


# --- 9. hostile and boundary inputs --------------------------------------------------------


def test_huge_organizational_unit_list_is_read_in_order(
    authority: TestCertificateAuthority,
) -> None:
    units = tuple(f"unit-{index:04}" for index in range(1000))
    cert = issue(authority, organizational_units=units)

    identity = identify("dev-1", {"clientCertificate": cert.der_base64})

    assert identity.organizational_units == Sourced(units, CERT)


def test_common_name_of_64_chars_matching_the_registration_id_is_accepted(
    authority: TestCertificateAuthority,
) -> None:
    registration_id = ("site:7.line_2-sensor" * 4)[:63] + "9"
    assert len(registration_id) == 64

    identity = identify(
        registration_id, {"clientCertificate": issue(authority, registration_id).der_base64}
    )

    assert identity.common_name == Sourced(registration_id, CERT)
    assert identity.device_id == Sourced(registration_id, REG)


@pytest.mark.parametrize("registration_id", ["plant:7.line_2-sensor", "a.b", "x_y:z-1", "A:B"])
def test_registration_id_with_separator_characters_matches_its_certificate(
    registration_id: str, authority: TestCertificateAuthority
) -> None:
    identity = identify(
        registration_id, {"clientCertificate": issue(authority, registration_id).der_base64}
    )

    assert identity.common_name == Sourced(registration_id, CERT)
    assert identity.registration_id == registration_id


FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_certificate_without_expiry_date_99991231235959z_is_accepted(
    authority: TestCertificateAuthority,
) -> None:
    # RFC 5280 4.1.2.5: notAfter 99991231235959Z means "no well-defined expiration date"
    # (IEEE 802.1AR device identity certificates use it).
    cert = issue(authority, not_after=FAR_FUTURE)

    identity = identify("dev-1", {"clientCertificate": cert.der_base64})

    assert identity.not_after == Sourced(FAR_FUTURE, CERT)


def test_info_not_after_of_year_9999_is_accepted() -> None:
    identity = identify("dev-1", {"certificateInfo": {"notAfterUtc": "9999-12-31T23:59:59Z"}})

    assert identity.not_after == Sourced(FAR_FUTURE, INFO)


def test_certificate_with_undecodable_subject_is_unreadable(
    authority: TestCertificateAuthority,
) -> None:
    # A UTF8String organization whose bytes are not UTF-8: cryptography parses names lazily.
    cert = issue(authority, organization="Zq-Org-77")
    raw = der(cert)
    at = raw.index(b"Zq-Org-77")
    broken = raw[:at] + b"\xff\xfe" + raw[at + 2 :]

    error = refusal("dev-1", {"clientCertificate": base64.b64encode(broken).decode()})

    assert isinstance(error, CertificateUnreadable)
    assert error.field == CERT_FIELD


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("subjectName", "CN=dev-1, 3.5=x"),
        ("issuerName", "1.99=Root"),
        ("subject", "CN=dev-1, OID.=x"),
    ],
)
def test_info_distinguished_name_with_invalid_attribute_type_is_refused(
    key: str, value: str
) -> None:
    with pytest.raises(AttestationError) as caught:
        identify("dev-1", {"certificateInfo": {key: value}})

    assert caught.value.field == f"{X509}.certificateInfo.{key}"
    assert "is not a distinguished name" in str(caught.value)


# --- contract rules that shape attestation -------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tpm": {"endorsementKey": "AToAAQ"}}, "carries x509 and tpm"),
        ({"symmetricKey": {}}, "carries x509 and symmetricKey"),
    ],
)
def test_two_attestation_kinds_at_once_are_invalid(
    extra: dict[str, Any], message: str, device: IssuedCertificate
) -> None:
    body = allocation_request("dev-1", x509={"clientCertificate": device.der_base64})
    body["deviceRuntimeContext"].update(extra)

    with pytest.raises(ValidationError, match=message):
        AllocationRequest.model_validate(body)
    with pytest.raises(ValidationError, match=message):
        AllocationRequest.model_validate_json(json.dumps(body))


def test_x509_section_that_is_not_an_object_is_invalid() -> None:
    body = allocation_request("dev-1")
    body["deviceRuntimeContext"]["x509"] = "MIIBkTCCATegAwIBAgIU"

    with pytest.raises(ValidationError) as caught:
        AllocationRequest.model_validate_json(json.dumps(body))

    assert caught.value.errors()[0]["loc"] == ("deviceRuntimeContext", "x509")


@pytest.mark.parametrize("key", ["currentIotHubHostName", "currentIoTHubHostName"])
def test_current_hub_is_read_in_either_casing(key: str, device: IssuedCertificate) -> None:
    body = allocation_request("dev-1", x509={"clientCertificate": device.der_base64})
    body["deviceRuntimeContext"][key] = EAST

    for request in (
        AllocationRequest.model_validate(body),
        AllocationRequest.model_validate_json(json.dumps(body)),
    ):
        assert request.device_runtime_context.current_iot_hub_host_name == EAST
        assert request.is_reregistration
        assert identify_request(request).common_name == Sourced("dev-1", CERT)


def test_request_parsed_from_json_reads_the_same_identity(
    device: IssuedCertificate, baseline: DeviceIdentity
) -> None:
    body = allocation_request("dev-1", x509={"clientCertificate": device.der_base64})

    request = AllocationRequest.model_validate_json(json.dumps(body))

    assert identify_request(request) == baseline


@pytest.mark.parametrize(
    "section",
    [
        {"clientCertificate": None},
        {"certificateInfo": None},
        {"clientCertificateInfo": None, "certificate": None},
    ],
)
def test_null_certificate_or_info_keys_count_as_absent(section: dict[str, Any]) -> None:
    identity = identify("dev-1", section)

    assert identity.common_name == Sourced("dev-1", REG)
    assert identity.subject_serial_number is None
