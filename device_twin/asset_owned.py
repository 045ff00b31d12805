"""The twin fields the asset system owns, built in one place for allocation and for sync."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from asset_client import Asset, AssetStatus
from roles import RoleAssignment, RoleName, RolePermissions

ASSET_OWNED_TAGS = ("assetId", "assetType", "location", "deviceRole", "assetStatus")
ASSET_OWNED_DESIRED = ("rolePermissions", "assetManagementEndpoint", "assetStatus")


@dataclass(frozen=True)
class AssetOwnedFields:
    asset_id: str
    asset_type: str
    location: str
    device_role: RoleName
    role_permissions: RolePermissions
    asset_management_endpoint: str
    retired: bool

    def tags(self) -> dict[str, Any]:
        """Every asset-owned tag; a None value means "absent" (a merge patch deletes it)."""
        return {
            "assetId": self.asset_id,
            "assetType": self.asset_type,
            "location": self.location,
            "deviceRole": self.device_role.value,
            "assetStatus": "retired" if self.retired else None,
        }

    def desired(self) -> dict[str, Any]:
        """The device sees these; assetStatus appears only once the asset is retired."""
        return {
            "rolePermissions": self.role_permissions.model_dump(mode="json"),
            "assetManagementEndpoint": self.asset_management_endpoint,
            "assetStatus": "retired" if self.retired else None,
        }

    def content_hash(self) -> str:
        """Stable over key order; the same asset-owned content always hashes the same."""
        document = {"tags": self.tags(), "desired": self.desired()}
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def asset_owned_fields(
    asset: Asset, role: RoleAssignment, asset_api_public_url: str
) -> AssetOwnedFields:
    return AssetOwnedFields(
        asset_id=asset.asset_id,
        asset_type=asset.asset_type,
        location=asset.location,
        device_role=role.role,
        role_permissions=role.permissions,
        asset_management_endpoint=(
            f"{asset_api_public_url.rstrip('/')}/assets/{quote(asset.asset_id, safe='')}"
        ),
        # Only retirement reaches the twin: other statuses change as a consequence of
        # provisioning itself (planned -> active on link), which would make DPS's repeated
        # calls answer differently.
        retired=asset.status == AssetStatus.RETIRED,
    )
