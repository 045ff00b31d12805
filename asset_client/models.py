"""Assets as the API returns them, bounded so that nothing oversized reaches a device twin."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class AssetStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    PENDING_REPLACEMENT = "pendingReplacement"
    RETIRED = "retired"


_Text128 = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ASSET_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""Asset ids as the contract (openapi.yaml) defines them."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class Replacement(_Model):
    old_device_id: _Text128 = Field(alias="oldDeviceId")
    approved_serial: _Text128 | None = Field(None, alias="approvedSerial")
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
    """Body of POST /assets/{id}/devices; idempotent per device id."""

    device_id: _Text128 = Field(alias="deviceId")
    registration_id: _Text128 = Field(alias="registrationId")
    thumbprint: str | None = None
    replacement_for: _Text128 | None = Field(None, alias="replacementFor")
    reason: str | None = Field(None, max_length=1024)
