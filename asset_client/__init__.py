"""The enterprise asset-management API: port, models, errors, aiohttp adapter.

Summarised in (docs/contracts.md, "The asset-management API").

openapi.yaml beside this file is the contract; devstack's reference service implements it.
"""

from asset_client.errors import (
    AssetAccessDenied,
    AssetCircuitOpen,
    AssetConflict,
    AssetContractViolation,
    AssetError,
    AssetNotFound,
    AssetRequestRejected,
    AssetUnavailable,
    AssetVersionConflict,
)
from asset_client.models import Asset, AssetStatus, DeviceLink, Replacement
from asset_client.port import AssetRepository

__all__ = [
    "Asset",
    "AssetAccessDenied",
    "AssetCircuitOpen",
    "AssetConflict",
    "AssetContractViolation",
    "AssetError",
    "AssetNotFound",
    "AssetRepository",
    "AssetRequestRejected",
    "AssetStatus",
    "AssetUnavailable",
    "AssetVersionConflict",
    "DeviceLink",
    "Replacement",
]
