"""Twin tags and desired properties as the app writes them (wire names in aliases)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from roles import RoleName, RolePermissions


class ProvisioningState(StrEnum):
    PROVISIONED = "provisioned"
    QUARANTINED = "quarantined"
    PENDING_RECONCILIATION = "pendingReconciliation"
    REFUSED = "refused"
    """Admitted by the fallback, then refused by reconciliation: disabled on its hub."""
    OVERDUE = "reconciliationOverdue"
    """Still pending after the policy's deadline: disabled until reconciliation succeeds."""


def format_twin_timestamp(moment: datetime) -> str:
    """UTC, second precision, `Z`: strings that compare in time order in IoT Hub queries."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HubSelection(StrEnum):
    """How the hub was chosen: by the asset's location rule, or spread over linked hubs."""

    LOCATION = "location"
    SPREAD = "spread"


class _TwinSection(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class DeviceTags(_TwinSection):
    """Tags are service-side only; the device never sees them."""

    asset_id: str | None = Field(None, alias="assetId")
    asset_type: str | None = Field(None, alias="assetType")
    location: str | None = None
    device_role: RoleName = Field(alias="deviceRole")
    provisioning_state: ProvisioningState = Field(alias="provisioningState")
    hub_selection: HubSelection = Field(alias="hubSelection")
    policy_version: str = Field(alias="policyVersion")
    pending_since: str | None = Field(None, alias="pendingSince")
    """When a fallback admitted the device (format_twin_timestamp); None once provisioned."""


class DesiredProperties(_TwinSection):
    role_permissions: RolePermissions = Field(alias="rolePermissions")
    asset_management_endpoint: str | None = Field(None, alias="assetManagementEndpoint")


class TwinProperties(_TwinSection):
    desired: DesiredProperties


class InitialTwin(_TwinSection):
    tags: DeviceTags
    properties: TwinProperties


class SyncMarker(_TwinSection):
    """tags.sync: which asset version the twin reflects, stamped in the same write.

    Stale or duplicated asset events compare against it; the twin-change notification that a
    sync write causes carries it, which is how the reverse direction knows its own echo.
    """

    source: str = "asset-sync"
    asset_version: int = Field(alias="assetVersion", ge=0)
    hash: str


class ReprovisionRequest(_TwinSection):
    """desired.reprovision: the asset moved to a location another hub serves.

    Device firmware acts on it by registering with DPS again; DPS then moves it.
    """

    required: bool
    target_hub: str | None = Field(None, alias="targetHub")
    reason: str
    asset_version: int = Field(alias="assetVersion")
