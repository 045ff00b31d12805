"""`[trust]`: the enrollment groups served and the CAs that issue devices, as the policy pins them.

Data only, read once when the policy loads: the CA files are read by resolve_ca_files(), and
the PEM text and thumbprints parsed here. The checks against a request live with the
allocation flow (allocation.trust).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

_SHA256 = re.compile(r"(?:sha256:)?([0-9A-Fa-f:]{64,95})")


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

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The pinned CA certificates (from PEM)."""
        return self._anchors

    def pins_thumbprint_of(self, certificate: x509.Certificate) -> bool:
        """Whether a thumbprint pin names this certificate."""
        return sha256_thumbprint(certificate) in self._thumbprints


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


def sha256_thumbprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()
