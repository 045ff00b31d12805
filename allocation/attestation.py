"""Read who is registering from the DPS runtime context: certificate, info object, or id alone.

DPS has already verified the certificate chain; we parse what it forwards, cross-check what we
can (thumbprints, validity, CN == registration id) and record where every field came from.
The inner shape of `x509` is not documented (CONTRACTS.md §1), so every plausible one is read.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from allocation.contract import DeviceRuntimeContext, EnrollmentRecord
from allocation.distinguished_name import DistinguishedNameError, parse_distinguished_name
from allocation.errors import (
    AmbiguousSubject,
    AttestationError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateUnreadable,
    CommonNameMismatch,
    ThumbprintMismatch,
)
from allocation.identity import DeviceIdentity, IdentitySource, Sourced

_X509 = "deviceRuntimeContext.x509"
_CERTIFICATE_KEYS = ("clientCertificate", "certificate")
_INFO_KEYS = ("clientCertificateInfo", "certificateInfo")
# DPS's X509CertificateInfo names first, then the .NET X509Certificate2 names.
_INFO_FIELDS: dict[str, tuple[str, ...]] = {
    "subject": ("subjectName", "subject"),
    "issuer": ("issuerName", "issuer"),
    "sha1": ("sha1Thumbprint", "thumbprint"),
    "sha256": ("sha256Thumbprint",),
    "not_before": ("notBeforeUtc", "notBefore"),
    "not_after": ("notAfterUtc", "notAfter"),
    "serial": ("serialNumber",),
}
_PRINTABLE_SERIAL = re.compile(r"^[\x20-\x7E]{1,128}$")
_NAME_OVERRIDES = {NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


@dataclass(frozen=True)
class _Facts:
    """What one source says; None where it is silent."""

    source: IdentitySource
    path: str
    common_name: str | None = None
    subject_serial_number: str | None = None
    organization: str | None = None
    organizational_units: tuple[str, ...] | None = None
    issuer: str | None = None
    certificate_serial: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None


def read_identity(
    context: DeviceRuntimeContext,
    enrollment: EnrollmentRecord,
    *,
    now: datetime,
    clock_skew: timedelta,
) -> DeviceIdentity:
    """Build the identity; raise an AttestationError naming the field when it does not hold."""
    certificate: _Facts | None = None
    info: _Facts | None = None
    if context.x509 is not None:
        certificate = _certificate_facts(context.x509)
        info = _info_facts(context.x509)
    if certificate and info:
        _check_thumbprints(certificate, info)

    sources = [facts for facts in (certificate, info) if facts is not None]
    paths = {facts.source: facts.path for facts in sources}
    paths[IdentitySource.REGISTRATION_ID] = "deviceRuntimeContext.registrationId"

    def pick(attribute: str) -> Sourced[Any] | None:
        for facts in sources:
            value = getattr(facts, attribute)
            if value is not None:
                return Sourced(value, facts.source)
        return None

    registration_id = context.registration_id
    common_name = pick("common_name") or Sourced(registration_id, IdentitySource.REGISTRATION_ID)
    if common_name.value.casefold() != registration_id.casefold():
        raise CommonNameMismatch(
            paths[common_name.source],
            f"subject CN {common_name.value!r} does not match registrationId {registration_id!r}",
        )
    not_before, not_after = pick("not_before"), pick("not_after")
    _check_validity(not_before, not_after, paths, now=now, clock_skew=clock_skew)

    # Group enrollments: the device id is the registration id. Individual ones may name it.
    device_id = (
        Sourced(enrollment.device_id, IdentitySource.ENROLLMENT)
        if enrollment.device_id
        else Sourced(registration_id, IdentitySource.REGISTRATION_ID)
    )
    return DeviceIdentity(
        registration_id=registration_id,
        device_id=device_id,
        attestation_kind=context.attestation_kind,
        common_name=common_name,
        subject_serial_number=pick("subject_serial_number"),
        organization=pick("organization"),
        organizational_units=pick("organizational_units"),
        issuer=pick("issuer"),
        certificate_serial=pick("certificate_serial"),
        sha1_thumbprint=pick("sha1"),
        sha256_thumbprint=pick("sha256"),
        not_before=not_before,
        not_after=not_after,
    )


def _certificate_facts(x509_section: Mapping[str, Any]) -> _Facts | None:
    key, text = _first_present(x509_section, _CERTIFICATE_KEYS)
    if key is None:
        return None
    field = f"{_X509}.{key}"
    if not isinstance(text, str) or not text.strip():
        raise CertificateUnreadable(field, "must be a base64 DER or PEM certificate string")
    certificate = load_certificate(text, field)
    cn, serial, organization, units = _subject_facts(certificate.subject, f"{field} subject")
    return _Facts(
        source=IdentitySource.CERTIFICATE,
        path=field,
        common_name=cn,
        subject_serial_number=serial,
        organization=organization,
        organizational_units=units,
        issuer=certificate.issuer.rfc4514_string(_NAME_OVERRIDES),
        certificate_serial=format(certificate.serial_number, "X"),
        sha1=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - identifier, not security
        sha256=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def load_certificate(text: str, field: str) -> x509.Certificate:
    """Accept PEM (first certificate of a chain is the leaf) or base64 DER, standard or URL-safe."""
    try:
        if "-----BEGIN" in text:
            return x509.load_pem_x509_certificates(text.encode())[0]
        compact = "".join(text.split()).replace("-", "+").replace("_", "/")
        der = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        if der.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(der)[0]
        return x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise CertificateUnreadable(field, "is not a base64 DER or PEM X.509 certificate") from exc


def _info_facts(x509_section: Mapping[str, Any]) -> _Facts | None:
    key, nested = _first_present(x509_section, _INFO_KEYS)
    if key is not None:
        if not isinstance(nested, Mapping):
            raise AttestationError(f"{_X509}.{key}", "must be an object")
        info, path = nested, f"{_X509}.{key}"
    else:
        info, path = x509_section, _X509
    values = {name: _first_present(info, aliases) for name, aliases in _INFO_FIELDS.items()}
    if all(found is None for found, _ in values.values()):
        return None

    def text(name: str) -> tuple[str, str] | None:
        found, value = values[name]
        if found is None or value is None:
            return None
        if not isinstance(value, str):
            raise AttestationError(f"{path}.{found}", "must be a string")
        return f"{path}.{found}", value

    cn = serial = organization = None
    units: tuple[str, ...] | None = None
    issuer = None
    if subject := text("subject"):
        cn, serial, organization, units = _subject_facts(_parse_dn(*subject), subject[0])
    if issuer_text := text("issuer"):
        issuer = _parse_dn(*issuer_text).rfc4514_string(_NAME_OVERRIDES)
    sha1, sha256, cert_serial = text("sha1"), text("sha256"), text("serial")
    return _Facts(
        source=IdentitySource.CERTIFICATE_INFO,
        path=path,
        common_name=cn,
        subject_serial_number=serial,
        organization=organization,
        organizational_units=units,
        issuer=issuer,
        certificate_serial=_normalize_hex(*cert_serial) if cert_serial else None,
        sha1=_normalize_hex(*sha1) if sha1 else None,
        sha256=_normalize_hex(*sha256) if sha256 else None,
        not_before=_timestamp(*found) if (found := text("not_before")) else None,
        not_after=_timestamp(*found) if (found := text("not_after")) else None,
    )


def _subject_facts(
    name: x509.Name, field: str
) -> tuple[str | None, str | None, str | None, tuple[str, ...] | None]:
    cn = _single(name, NameOID.COMMON_NAME, field, "common names")
    serial = _single(name, NameOID.SERIAL_NUMBER, field, "serialNumber attributes")
    if serial is not None and not _PRINTABLE_SERIAL.fullmatch(serial):
        raise AttestationError(field, "subject serialNumber must be 1-128 printable ASCII chars")
    organization = _single(name, NameOID.ORGANIZATION_NAME, field, "organization names")
    units = tuple(_values(name, NameOID.ORGANIZATIONAL_UNIT_NAME)) or None
    return cn, serial, organization, units


def _single(name: x509.Name, oid: x509.ObjectIdentifier, field: str, what: str) -> str | None:
    """Two different CNs (or serials) would let a certificate match more than one device."""
    distinct = list(dict.fromkeys(_values(name, oid)))
    if len(distinct) > 1:
        raise AmbiguousSubject(field, f"subject has {len(distinct)} different {what}")
    return distinct[0] if distinct else None


def _values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [
        value if isinstance(value, str) else value.decode("utf-8", "replace")
        for value in (attribute.value for attribute in name.get_attributes_for_oid(oid))
    ]


def _parse_dn(field: str, text: str) -> x509.Name:
    try:
        return parse_distinguished_name(text)
    except DistinguishedNameError as exc:
        raise AttestationError(field, f"is not a distinguished name: {exc}") from exc


def _normalize_hex(field: str, value: str) -> str:
    digits = re.sub(r"[\s:]", "", value).upper()
    if not digits or len(digits) > 128 or not re.fullmatch(r"[0-9A-F]+", digits):
        raise AttestationError(field, "must be hexadecimal")
    return digits


def _timestamp(field: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AttestationError(field, "must be an ISO 8601 timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_thumbprints(certificate: _Facts, info: _Facts) -> None:
    for name, given, computed in (
        ("sha1Thumbprint", info.sha1, certificate.sha1),
        ("sha256Thumbprint", info.sha256, certificate.sha256),
    ):
        if given is not None and given != computed:
            raise ThumbprintMismatch(
                f"{info.path}.{name}", "does not match the thumbprint of the client certificate"
            )


def _check_validity(
    not_before: Sourced[datetime] | None,
    not_after: Sourced[datetime] | None,
    paths: Mapping[IdentitySource, str],
    *,
    now: datetime,
    clock_skew: timedelta,
) -> None:
    if not_after is not None and now > not_after.value + clock_skew:
        raise CertificateExpired(
            paths[not_after.source],
            f"certificate expired at {not_after.value.isoformat()}",
        )
    if not_before is not None and now < not_before.value - clock_skew:
        raise CertificateNotYetValid(
            paths[not_before.source],
            f"certificate is not valid before {not_before.value.isoformat()}",
        )


def _first_present(mapping: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    """Look a key up case-insensitively; DPS's JSON casing is not documented for these."""
    lowered = {key.lower(): key for key in mapping}
    for name in names:
        key = lowered.get(name.lower())
        if key is not None:
            return key, mapping[key]
    return None, None
