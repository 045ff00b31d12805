"""Who owns which twin field: the one table both sync directions read. No field has two owners.

asset  - the asset system decides; sync copies the asset onto the twin, the twin never wins.
device - the device reports it; sync copies the newest reported value onto the asset.
app    - this app's own markers; nobody else writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Owner(StrEnum):
    ASSET = "asset"
    DEVICE = "device"
    APP = "app"


@dataclass(frozen=True)
class FieldRule:
    twin_path: tuple[str, ...]
    owner: Owner
    asset_path: tuple[str, ...] | None
    conflict_rule: str
    required_action: str | None = None
    """For device-owned fields: the roles.authorize() action the device's role must allow."""

    @property
    def twin_name(self) -> str:
        return ".".join(self.twin_path)


_ASSET_WINS = "asset wins: the twin is rewritten from the current asset, never the reverse"
_DEVICE_WINS = "device wins: the newest reported value is copied to the asset (If-Match)"
_APP_ONLY = "app only: written by this app, ignored when anyone else changes it"

FIELD_OWNERSHIP: tuple[FieldRule, ...] = (
    FieldRule(("tags", "assetId"), Owner.ASSET, ("assetId",), _ASSET_WINS),
    FieldRule(("tags", "assetType"), Owner.ASSET, ("assetType",), _ASSET_WINS),
    FieldRule(("tags", "location"), Owner.ASSET, ("location",), _ASSET_WINS),
    FieldRule(("tags", "deviceRole"), Owner.ASSET, ("assetType",), _ASSET_WINS + " (via policy)"),
    FieldRule(("tags", "assetStatus"), Owner.ASSET, ("status",), _ASSET_WINS + " (retired only)"),
    FieldRule(
        ("properties", "desired", "rolePermissions"),
        Owner.ASSET,
        ("assetType",),
        _ASSET_WINS + " (via policy)",
    ),
    FieldRule(
        ("properties", "desired", "assetManagementEndpoint"), Owner.ASSET, ("assetId",), _ASSET_WINS
    ),
    FieldRule(("properties", "desired", "assetStatus"), Owner.ASSET, ("status",), _ASSET_WINS),
    FieldRule(("properties", "desired", "reprovision"), Owner.APP, None, _APP_ONLY),
    FieldRule(("tags", "sync"), Owner.APP, None, _APP_ONLY),
    FieldRule(("tags", "provisioningState"), Owner.APP, None, _APP_ONLY),
    FieldRule(("tags", "hubSelection"), Owner.APP, None, _APP_ONLY),
    FieldRule(("tags", "policyVersion"), Owner.APP, None, _APP_ONLY),
    FieldRule(
        ("properties", "reported", "firmwareVersion"),
        Owner.DEVICE,
        ("attributes", "firmwareVersion"),
        _DEVICE_WINS,
    ),
    FieldRule(
        ("properties", "reported", "health"), Owner.DEVICE, ("attributes", "health"), _DEVICE_WINS
    ),
    FieldRule(
        ("properties", "reported", "configuration"),
        Owner.DEVICE,
        ("attributes", "configuration"),
        _DEVICE_WINS + "; only when the role allows configuration",
        required_action="configuration.limited",
    ),
    FieldRule(
        ("properties", "reported", "connectedDevices"),
        Owner.DEVICE,
        ("attributes", "connectedDevices"),
        _DEVICE_WINS + "; only when the role relays for other devices",
        required_action="commands.relay",
    ),
    FieldRule(
        ("properties", "reported", "serialNumber"),
        Owner.DEVICE,
        None,
        "checked, never copied: a mismatch with the asset's serial is logged as an anomaly",
    ),
)

DEVICE_REPORTED: dict[str, FieldRule] = {
    rule.twin_path[-1]: rule
    for rule in FIELD_OWNERSHIP
    if rule.owner is Owner.DEVICE and rule.twin_path[:2] == ("properties", "reported")
}
"""Reported property name -> rule, for the twin -> asset direction."""


def _check_one_owner() -> None:
    seen: set[tuple[str, ...]] = set()
    for rule in FIELD_OWNERSHIP:
        if rule.twin_path in seen:
            raise RuntimeError(f"{rule.twin_name} has two owners in FIELD_OWNERSHIP")
        seen.add(rule.twin_path)


_check_one_owner()
