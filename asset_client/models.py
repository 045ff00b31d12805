"""Assets as the API returns them, bounded so that nothing oversized reaches a device twin."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class AssetStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    PENDING_REPLACEMENT = "pendingReplacement"
    RETIRED = "retired"


_Text128 = Annotated[str, StringConstraints(min_length=1, max_length=128)]


_THUMBPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_SHA1_HEX_DIGITS = 40


def normalized_thumbprint(value: str) -> str:
    """Hex digits only, upper case: `ab:cd ef` and `ABCDEF` name the same certificate."""
    return re.sub(r"[\s:]", "", value).upper()


def _thumbprint(value: str) -> str:
    normalized = normalized_thumbprint(value[:200])
    if not _THUMBPRINT.fullmatch(normalized):
        raise ValueError("must be a SHA-1 (40 hex digits) or SHA-256 (64) thumbprint")
    return normalized


Thumbprint = Annotated[str, AfterValidator(_thumbprint)]
"""A certificate's SHA-1 or SHA-256 thumbprint, normalized."""

ASSET_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""Asset ids as the contract (openapi.yaml) defines them."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class Replacement(_Model):
    """A technician's approval to swap the asset's device for new, named hardware.

    Single use; it expires (the policy's TTL from `approved_at`). The new hardware is named by
    its certificate's subject serialNumber, its thumbprint, or both.
    """

    old_device_id: _Text128 = Field(alias="oldDeviceId")
    approved_serial: _Text128 | None = Field(None, alias="approvedSerial")
    approved_thumbprint: Thumbprint | None = Field(None, alias="approvedThumbprint")
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    approved_at: datetime | None = Field(None, alias="approvedAt")


class Asset(_Model):
    asset_id: Annotated[str, StringConstraints(pattern=ASSET_ID_PATTERN.pattern)] = Field(
        alias="assetId"
    )
    serial_number: _Text128 = Field(alias="serialNumber")
    asset_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        alias="assetType"
    )
    location: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    status: AssetStatus
    device_id: _Text128 | None = Field(None, alias="deviceId")
    provisioning_status: str | None = Field(None, alias="provisioningStatus", max_length=64)
    replacement: Replacement | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    version: int = Field(ge=0)
    updated_at: datetime | None = Field(None, alias="updatedAt")


class DeviceLink(_Model):
    """Body of POST /assets/{id}/devices; idempotent per device id.

    The hardware facts (serial, thumbprints) let the asset system check a replacement approval
    against the device that claims it, in the same transaction as the link.
    """

    device_id: _Text128 = Field(alias="deviceId")
    registration_id: _Text128 = Field(alias="registrationId")
    thumbprint: str | None = None
    """SHA-256 of the device certificate when known, else its SHA-1."""
    sha1_thumbprint: str | None = Field(None, alias="sha1Thumbprint")
    serial_number: _Text128 | None = Field(None, alias="serialNumber")
    """The certificate's subject serialNumber."""
    replacement_for: _Text128 | None = Field(None, alias="replacementFor")
    device_reason: str | None = Field(None, alias="deviceReason", max_length=256)
    """What the device claimed as its reason: untrusted, sanitised, kept apart from the
    technician's reason on the approval."""

    def body(self) -> dict[str, Any]:
        """The request body. A SHA-1 goes once: when it is the `thumbprint` (no SHA-256 known),
        the API refuses it again as `sha1Thumbprint`."""
        body = self.model_dump(by_alias=True, exclude_none=True)
        sha1_is_thumbprint = (
            self.thumbprint is not None
            and len(normalized_thumbprint(self.thumbprint)) == _SHA1_HEX_DIGITS
        )
        if sha1_is_thumbprint:
            body.pop("sha1Thumbprint", None)
        return body
