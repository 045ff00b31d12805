"""DPS's X509CertificateInfo, and the shapes the webhook's `deviceRuntimeContext.x509` may take."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

_NAME_OVERRIDES = {NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


class X509Shape(StrEnum):
    """How `deviceRuntimeContext.x509` is filled. The real shape is undocumented
    (docs/contracts.md, "The x509 attestation shape").
    """

    CLIENT_CERTIFICATE = "clientCertificate"
    PEM = "pem"
    CERTIFICATE_INFO = "certificateInfo"
    CLIENT_CERTIFICATE_INFO = "clientCertificateInfo"
    FLAT_INFO = "flatInfo"
    NONE = "none"


def distinguished_name(name: x509.Name) -> str:
    """Most specific RDN first, ", " between them: how .NET (and so DPS) prints names."""
    return ", ".join(rdn.rfc4514_string(_NAME_OVERRIDES) for rdn in reversed(name.rdns))


def _utc(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def certificate_info(certificate: x509.Certificate) -> dict[str, Any]:
    """X509CertificateInfo with DPS's property names."""
    return {
        "subjectName": distinguished_name(certificate.subject),
        "sha1Thumbprint": certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        "sha256Thumbprint": certificate.fingerprint(hashes.SHA256()).hex().upper(),
        "issuerName": distinguished_name(certificate.issuer),
        "notBeforeUtc": _utc(certificate.not_valid_before_utc),
        "notAfterUtc": _utc(certificate.not_valid_after_utc),
        "serialNumber": format(certificate.serial_number, "X"),
        "version": certificate.version.value + 1,
    }


def runtime_x509(certificate: x509.Certificate, shape: X509Shape) -> dict[str, Any]:
    """The `x509` object of the webhook's deviceRuntimeContext in the chosen shape."""
    match shape:
        case X509Shape.CLIENT_CERTIFICATE:
            der = certificate.public_bytes(serialization.Encoding.DER)
            return {"clientCertificate": base64.b64encode(der).decode()}
        case X509Shape.PEM:
            pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
            return {"clientCertificate": pem}
        case X509Shape.CERTIFICATE_INFO:
            return {"certificateInfo": certificate_info(certificate)}
        case X509Shape.CLIENT_CERTIFICATE_INFO:
            return {"clientCertificateInfo": certificate_info(certificate)}
        case X509Shape.FLAT_INFO:
            return certificate_info(certificate)
        case X509Shape.NONE:
            return {}
