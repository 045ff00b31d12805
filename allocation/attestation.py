"""Read who is registering from the DPS runtime context: certificate, info object, or id alone.

DPS has already verified the certificate chain; we parse what it forwards, cross-check what we
can (thumbprints, validity, CN == registration id) and record where every field came from.
The inner shape of `x509` is not documented, so every plausible one is read
(docs/contracts.md, "The x509 attestation shape").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from allocation.contract import DeviceRuntimeContext, EnrollmentRecord
from allocation.distinguished_name import DistinguishedNameError, parse_distinguished_name
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

_X509 = "deviceRuntimeContext.x509"
_REGISTRATION_ID = "deviceRuntimeContext.registrationId"
_CERTIFICATE_KEYS = ("clientCertificate", "certificate")
# The device's own certificate info; `signingCertificateInfo` describes the CA and is ignored.
_INFO_KEYS = ("clientCertificateInfo", "certificateInfo")
# DPS's X509CertificateInfo names first, then the .NET X509Certificate2 names.
_INFO_FIELDS: dict[str, tuple[str, ...]] = {
    "subject": ("subjectName", "subject"),
    "issuer": ("issuerName", "issuer"),
    "sha1": ("sha1Thumbprint", "thumbprint"),
    "sha256": ("sha256Thumbprint",),
    "not_before": ("notBeforeUtc", "notBefore"),
    "not_after": ("notAfterUtc", "notAfter"),
    "certificate_serial": ("serialNumber",),
}
_PRINTABLE_SERIAL = re.compile(r"[\x20-\x7E]{1,128}")
_MAX_CHAIN = 8
_UNREADABLE: tuple[type[Exception], ...] = (ValueError, x509.InvalidVersion, UnsupportedAlgorithm)
"""What cryptography raises for a certificate, or one of its fields, that does not parse."""
_UNREADABLE_TEXT: tuple[type[Exception], ...] = (*_UNREADABLE, binascii.Error, UnicodeEncodeError)
_NAME_OVERRIDES = {NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


@dataclass(frozen=True)
class _Facts:
    """What one source says, and the JSON path of the key that said each thing."""

    source: IdentitySource
    values: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: Any, path: str) -> None:
        if value is not None:
            self.values[name] = value
            self.paths[name] = path


def read_identity(
    context: DeviceRuntimeContext,
    enrollment: EnrollmentRecord,
    *,
    now: datetime,
    clock_skew: timedelta,
) -> DeviceIdentity:
    """Build the identity; raise an AttestationError naming the field when it does not hold."""
    certificate = info = None
    chain: tuple[x509.Certificate, ...] = ()
    if context.x509 is not None:
        found = _certificate_facts(context.x509)
        if found is not None:
            certificate, chain = found
        info = _info_facts(context.x509)
    if certificate and info:
        _check_agreement(certificate, info)
    sources = [facts for facts in (certificate, info) if facts is not None]

    def pick(name: str) -> tuple[Sourced[Any], str] | None:
        for facts in sources:
            if name in facts.values:
                return Sourced(facts.values[name], facts.source), facts.paths[name]
        return None

    def value(name: str) -> Sourced[Any] | None:
        found = pick(name)
        return found[0] if found else None

    registration_id = context.registration_id
    common_name, cn_path = pick("common_name") or (
        Sourced(registration_id, IdentitySource.REGISTRATION_ID),
        _REGISTRATION_ID,
    )
    if common_name.value.casefold() != registration_id.casefold():
        raise CommonNameMismatch(
            cn_path,
            "subject CN does not match registrationId",
            evidence=f"CN {common_name.value!r}, registrationId {registration_id!r}",
        )
    _check_validity(pick("not_before"), pick("not_after"), now=now, clock_skew=clock_skew)

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
        subject_serial_number=value("subject_serial_number"),
        organization=value("organization"),
        organizational_units=value("organizational_units"),
        issuer=value("issuer"),
        certificate_serial=value("certificate_serial"),
        sha1_thumbprint=value("sha1"),
        sha256_thumbprint=value("sha256"),
        not_before=value("not_before"),
        not_after=value("not_after"),
        certificate_chain=chain,
    )


def _certificate_facts(
    x509_section: Mapping[str, Any],
) -> tuple[_Facts, tuple[x509.Certificate, ...]] | None:
    """The leaf's facts, and the chain as sent (leaf first) for the trust check."""
    key, text = _first_present(x509_section, _CERTIFICATE_KEYS)
    if key is None or text is None:
        return None
    path = f"{_X509}.{key}"
    if not isinstance(text, str) or not text.strip():
        raise CertificateUnreadable(path, "must be a base64 DER or PEM certificate string")
    chain = load_certificates(text, path)
    certificate = chain[0]
    facts = _Facts(IdentitySource.CERTIFICATE)
    try:
        # cryptography parses lazily: a malformed field surfaces only when it is read, and each
        # kind of malformation raises its own exception type.
        subject, issuer = certificate.subject, certificate.issuer
        issuer_text = issuer.rfc4514_string(_NAME_OVERRIDES)
        serial = format(certificate.serial_number, "X")
        sha1 = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier
        sha256 = certificate.fingerprint(hashes.SHA256()).hex().upper()
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        _put_subject(facts, subject, path)
    except AttestationError:
        raise
    except _UNREADABLE as exc:
        raise CertificateUnreadable(
            path, "has a field that does not parse", evidence=type(exc).__name__
        ) from exc
    facts.put("issuer", issuer_text, path)
    facts.put("certificate_serial", serial, path)
    facts.put("sha1", sha1, path)
    facts.put("sha256", sha256, path)
    facts.put("not_before", not_before, path)
    facts.put("not_after", not_after, path)
    return facts, tuple(chain)


def load_certificate(text: str, field: str) -> x509.Certificate:
    """Accept PEM (first certificate of a chain is the leaf) or base64 DER, standard or URL-safe."""
    return load_certificates(text, field)[0]


def load_certificates(text: str, field: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain (leaf first), or the one of a base64 DER string."""
    try:
        if "-----BEGIN" in text:
            return _pem_chain(text.encode())
        compact = "".join(text.split()).replace("-", "+").replace("_", "/")
        der = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        if der.startswith(b"-----BEGIN"):
            return _pem_chain(der)
        return [x509.load_der_x509_certificate(der)]
    except _UNREADABLE_TEXT as exc:
        raise CertificateUnreadable(
            field, "is not a base64 DER or PEM X.509 certificate", evidence=type(exc).__name__
        ) from exc


def _pem_chain(data: bytes) -> list[x509.Certificate]:
    chain = x509.load_pem_x509_certificates(data)
    if len(chain) > _MAX_CHAIN:
        raise ValueError(f"more than {_MAX_CHAIN} certificates")
    return chain


def _info_facts(x509_section: Mapping[str, Any]) -> _Facts | None:
    key, nested = _first_present(x509_section, _INFO_KEYS)
    if key is not None and nested is not None:
        if not isinstance(nested, Mapping):
            raise AttestationError(f"{_X509}.{key}", "must be an object")
        info, base = nested, f"{_X509}.{key}"
    else:
        info, base = x509_section, _X509

    texts: dict[str, tuple[str, str]] = {}
    for name, aliases in _INFO_FIELDS.items():
        found, value = _first_present(info, aliases)
        if found is None or value is None:
            continue
        if not isinstance(value, str):
            raise AttestationError(f"{base}.{found}", "must be a string")
        texts[name] = (f"{base}.{found}", value)
    if not texts:
        return None

    facts = _Facts(IdentitySource.CERTIFICATE_INFO)
    if "subject" in texts:
        path, text = texts["subject"]
        _put_subject(facts, _parse_dn(path, text), path)
    if "issuer" in texts:
        path, text = texts["issuer"]
        facts.put("issuer", _parse_dn(path, text).rfc4514_string(_NAME_OVERRIDES), path)
    for name in ("sha1", "sha256", "certificate_serial"):
        if name in texts:
            path, text = texts[name]
            facts.put(
                name, _hex(path, text, strip_leading_zeros=name == "certificate_serial"), path
            )
    for name in ("not_before", "not_after"):
        if name in texts:
            path, text = texts[name]
            facts.put(name, _timestamp(path, text), path)
    return facts


def _put_subject(facts: _Facts, name: x509.Name, path: str) -> None:
    facts.put("common_name", _single(name, NameOID.COMMON_NAME, path, "common names"), path)
    serial = _single(name, NameOID.SERIAL_NUMBER, path, "serialNumber attributes")
    if serial is not None and not _PRINTABLE_SERIAL.fullmatch(serial):
        raise AttestationError(path, "subject serialNumber must be 1-128 printable ASCII chars")
    facts.put("subject_serial_number", serial, path)
    organization = _single(name, NameOID.ORGANIZATION_NAME, path, "organization names")
    facts.put("organization", organization, path)
    facts.put(
        "organizational_units", tuple(_values(name, NameOID.ORGANIZATIONAL_UNIT_NAME)) or None, path
    )


def _single(name: x509.Name, oid: x509.ObjectIdentifier, path: str, what: str) -> str | None:
    """Two different CNs (or serials) would let one certificate match more than one device."""
    distinct = list(dict.fromkeys(_values(name, oid)))
    if len(distinct) > 1:
        raise AmbiguousSubject(path, f"subject has {len(distinct)} different {what}")
    return distinct[0] if distinct else None


def _values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [
        value if isinstance(value, str) else value.decode("utf-8", "replace")
        for value in (attribute.value for attribute in name.get_attributes_for_oid(oid))
    ]


def _parse_dn(path: str, text: str) -> x509.Name:
    try:
        return parse_distinguished_name(text)
    except DistinguishedNameError as exc:
        raise AttestationError(path, "is not a distinguished name", evidence=str(exc)) from exc


def _hex(path: str, value: str, *, strip_leading_zeros: bool) -> str:
    digits = re.sub(r"[\s:]", "", value).upper()
    if not digits or len(digits) > 128 or not re.fullmatch(r"[0-9A-F]+", digits):
        raise AttestationError(path, "must be hexadecimal")
    # .NET prints serials with a leading 00 where the DER integer has one; ours never does.
    return (digits.lstrip("0") or "0") if strip_leading_zeros else digits


def _timestamp(path: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AttestationError(path, "must be an ISO 8601 timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_AGREEING_FIELDS: tuple[tuple[str, str], ...] = (
    ("sha1", "thumbprint"),
    ("sha256", "thumbprint"),
    ("certificate_serial", "serial number"),
    ("common_name", "subject"),
    ("subject_serial_number", "subject"),
    ("organization", "subject"),
    ("organizational_units", "subject"),
)


def _check_agreement(certificate: _Facts, info: _Facts) -> None:
    """DPS's summary of the certificate must describe the certificate sent with it."""
    for name, what in _AGREEING_FIELDS:
        given = info.values.get(name)
        if given is None:
            continue
        actual = certificate.values.get(name)
        same = (
            given == actual if name != "organizational_units" else set(given) == set(actual or ())
        )
        if same:
            continue
        error = ThumbprintMismatch if what == "thumbprint" else CertificateSummaryMismatch
        raise error(info.paths[name], f"does not match the {what} of the client certificate")


def _check_validity(
    not_before: tuple[Sourced[datetime], str] | None,
    not_after: tuple[Sourced[datetime], str] | None,
    *,
    now: datetime,
    clock_skew: timedelta,
) -> None:
    # Shift `now`, never the certificate's dates: 9999-12-31 means "no expiry" (RFC 5280).
    if not_after is not None and now - clock_skew > not_after[0].value:
        raise CertificateExpired(
            not_after[1], f"certificate expired at {not_after[0].value.isoformat()}"
        )
    if not_before is not None and now + clock_skew < not_before[0].value:
        raise CertificateNotYetValid(
            not_before[1], f"certificate is not valid before {not_before[0].value.isoformat()}"
        )


def _first_present(mapping: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    """Look a key up case-insensitively; DPS's JSON casing is not documented for these."""
    lowered = {key.lower(): key for key in mapping}
    for name in names:
        key = lowered.get(name.lower())
        if key is not None:
            return key, mapping[key]
    return None, None
