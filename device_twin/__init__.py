"""The device twin sections this app owns, typed once and shared by every flow that writes them."""

from device_twin.model import (
    DesiredProperties,
    DeviceTags,
    HubSelection,
    InitialTwin,
    ProvisioningState,
    TwinProperties,
)

__all__ = [
    "DesiredProperties",
    "DeviceTags",
    "HubSelection",
    "InitialTwin",
    "ProvisioningState",
    "TwinProperties",
]
