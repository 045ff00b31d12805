"""Trust anchors the policy may pin: the enrollment groups served and the CAs that issue devices.

Defence in depth. DPS verifies the device's chain before it calls the webhook, but anyone who
holds the function key can call the webhook directly with a request of their making. Pinned
groups refuse requests from any other enrollment; pinned CAs refuse a certificate that does not
verify against them (signature, validity, CA constraints). No I/O: the policy loader reads the
CA files, these checks only look at what they are given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from allocation.errors import CertificateRequired, UntrustedEnrollment, UntrustedIssuer

_SHA256 = re.compile(r"(?:sha256:)?([0-9A-Fa-f:]{64,95})")
_CERTIFICATE_FIELD = "deviceRuntimeContext.x509.clientCertificate"


class TrustPolicy(BaseModel):
    """`[trust]` in the policy file. Nothing pinned means every enrollment and issuer is served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enrollment_groups: tuple[str, ...] | None = Field(None, max_length=1000)
    """Enrollment group ids this webhook serves (case-insensitive); None serves any group."""
    individual_enrollments: bool | None = None
    """Whether individual enrollments are served; by default only when no group is pinned."""
    issuing_cas: tuple[str, ...] = Field((), max_length=100)
    """CA certificates (PEM) or SHA-256 thumbprints of CA certificates that may issue devices."""
    require_certificate: bool = False
    """With pinned CAs, refuse a request that carries no certificate to verify."""

    _anchors: tuple[x509.Certificate, ...] = PrivateAttr(())
    _thumbprints: frozenset[str] = PrivateAttr(frozenset())

    @model_validator(mode="after")
    def _parse_cas(self) -> TrustPolicy:
        anchors: list[x509.Certificate] = []
        thumbprints: set[str] = set()
        for index, entry in enumerate(self.issuing_cas):
            text = entry.strip()
            if "-----BEGIN CERTIFICATE-----" in text:
                try:
                    anchors += x509.load_pem_x509_certificates(text.encode())
                except ValueError as exc:
                    raise ValueError(f"issuing_cas[{index}] is not a PEM certificate") from exc
                continue
            match = _SHA256.fullmatch(text)
            digits = match.group(1).replace(":", "").upper() if match else ""
            if len(digits) != 64:
                raise ValueError(
                    f"issuing_cas[{index}] must be a PEM file, PEM text or a SHA-256 thumbprint"
                )
            thumbprints.add(digits)
        if self.require_certificate and not (anchors or thumbprints):
            raise ValueError("require_certificate needs issuing_cas to verify against")
        self._anchors = tuple(anchors)
        self._thumbprints = frozenset(thumbprints)
        return self

    @property
    def pins_issuers(self) -> bool:
        return bool(self._anchors or self._thumbprints)

    def check_enrollment(self, *, group_id: str | None, individual: bool) -> None:
        """Raise UntrustedEnrollment unless this enrollment is served."""
        if individual:
            served = self.individual_enrollments
            if served is None:
                served = self.enrollment_groups is None
            if not served:
                raise UntrustedEnrollment(
                    "an individual enrollment; the policy serves only enrollment groups "
                    "(trust.individual_enrollments)",
                    public="individualEnrollment: not served by this webhook "
                    "(policy trust.individual_enrollments)",
                )
            return
        if self.enrollment_groups is None:
            return
        pinned = {group.casefold() for group in self.enrollment_groups}
        if group_id is None or group_id.casefold() not in pinned:
            raise UntrustedEnrollment(
                f"enrollment group {str(group_id)[:128]!r} is not in trust.enrollment_groups",
                public="enrollmentGroup.enrollmentGroupId: not served by this webhook "
                "(policy trust.enrollment_groups)",
            )

    def check_issuer(self, chain: Sequence[x509.Certificate], *, now: datetime) -> None:
        """Verify the leaf (chain[0]) against the pinned CAs; the rest are intermediates.

        A thumbprint pin anchors the chain at a certificate the request itself carries, so it
        only helps when the device presents its chain; PEM pins work with the leaf alone.
        """
        if not self.pins_issuers:
            return
        if not chain:
            if self.require_certificate:
                raise CertificateRequired(
                    "deviceRuntimeContext.x509",
                    "the policy pins issuing CAs and requires the certificate itself "
                    "(trust.require_certificate)",
                )
            return
        leaf, presented = chain[0], list(chain[1:])
        anchors = list(self._anchors) + [
            certificate for certificate in presented if _sha256(certificate) in self._thumbprints
        ]
        if not anchors:
            raise UntrustedIssuer(
                _CERTIFICATE_FIELD,
                "not issued by a CA the policy pins (trust.issuing_cas)",
                evidence="no pinned CA certificate available for this chain",
            )
        verifier = (
            PolicyBuilder()
            .store(Store(anchors))
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                # Device certificates rarely carry a subjectAltName or a client-auth EKU;
                # the chain, signatures and validity are what the webhook can check.
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, presented)
        except VerificationError as exc:
            raise UntrustedIssuer(
                _CERTIFICATE_FIELD,
                "not issued by a CA the policy pins (trust.issuing_cas)",
                evidence=str(exc),
            ) from exc
        except ValueError as exc:
            raise UntrustedIssuer(
                _CERTIFICATE_FIELD,
                "not issued by a CA the policy pins (trust.issuing_cas)",
                evidence=f"{type(exc).__name__}",
            ) from exc


def resolve_ca_files(data: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Replace `trust.issuing_cas` entries that name files with the files' PEM text."""
    trust = data.get("trust")
    if not isinstance(trust, dict) or not isinstance(trust.get("issuing_cas"), list):
        return data
    resolved: list[Any] = []
    for index, entry in enumerate(trust["issuing_cas"]):
        if not isinstance(entry, str) or "-----BEGIN" in entry or _SHA256.fullmatch(entry.strip()):
            resolved.append(entry)
            continue
        path = Path(entry)
        if not path.is_absolute():
            if base_dir is None:
                raise ValueError(f"trust.issuing_cas[{index}]: a relative path needs a base dir")
            path = base_dir / path
        try:
            resolved.append(path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII PEM"
            raise ValueError(f"trust.issuing_cas[{index}]: cannot read {path}: {reason}") from exc
    return {**data, "trust": {**trust, "issuing_cas": resolved}}


def _sha256(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()
