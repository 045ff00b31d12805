"""The device identity the webhook works from, with the source of every field."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from cryptography import x509

T = TypeVar("T")

AttestationKind = Literal["x509", "symmetricKey", "tpm", "none"]


class IdentitySource(StrEnum):
    """Where a value came from; the certificate is the only source we parse ourselves."""

    CERTIFICATE = "certificate"
    CERTIFICATE_INFO = "certificateInfo"
    REGISTRATION_ID = "registrationId"
    ENROLLMENT = "enrollment"


@dataclass(frozen=True)
class Sourced(Generic[T]):
    value: T
    source: IdentitySource


@dataclass(frozen=True)
class DeviceIdentity:
    """Who is registering. Optional fields are None when no source carried them."""

    registration_id: str
    device_id: Sourced[str]
    attestation_kind: AttestationKind
    common_name: Sourced[str]
    subject_serial_number: Sourced[str] | None = None
    organization: Sourced[str] | None = None
    organizational_units: Sourced[tuple[str, ...]] | None = None
    issuer: Sourced[str] | None = None
    certificate_serial: Sourced[str] | None = None
    sha1_thumbprint: Sourced[str] | None = None
    sha256_thumbprint: Sourced[str] | None = None
    not_before: Sourced[datetime] | None = None
    not_after: Sourced[datetime] | None = None
    certificate_chain: tuple[x509.Certificate, ...] = field(default=(), compare=False, repr=False)
    """The certificates the request carried, leaf first (empty without a certificate)."""

    def provenance(self) -> dict[str, str]:
        """Field name -> source, for the audit trail and `explain`."""
        result: dict[str, str] = {}
        for member in fields(self):
            value = getattr(self, member.name)
            if isinstance(value, Sourced):
                result[member.name] = value.source.value
        return result

    @property
    def thumbprint(self) -> str | None:
        """The thumbprint recorded on the asset link: SHA-256 when known, else SHA-1."""
        chosen = self.sha256_thumbprint or self.sha1_thumbprint
        return chosen.value if chosen else None
