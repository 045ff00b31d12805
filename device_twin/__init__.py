"""The device twin sections this app owns, typed once and shared by every flow that writes them."""

from device_twin.asset_owned import (
    ASSET_OWNED_DESIRED,
    ASSET_OWNED_TAGS,
    AssetOwnedFields,
    asset_owned_fields,
)
from device_twin.model import (
    DesiredProperties,
    DeviceTags,
    HubSelection,
    InitialTwin,
    ProvisioningState,
    ReprovisionRequest,
    SyncMarker,
    TwinProperties,
    format_twin_timestamp,
)

__all__ = [
    "ASSET_OWNED_DESIRED",
    "ASSET_OWNED_TAGS",
    "AssetOwnedFields",
    "DesiredProperties",
    "DeviceTags",
    "HubSelection",
    "InitialTwin",
    "ProvisioningState",
    "ReprovisionRequest",
    "SyncMarker",
    "TwinProperties",
    "asset_owned_fields",
    "format_twin_timestamp",
]
