"""Who owns which twin field: the one table both sync directions read. No field has two owners.

asset  - the asset system decides; sync copies the asset onto the twin, the twin never wins.
device - the device reports it; sync copies the newest reported value onto the asset, if it
         fits the field's constraint (reported properties are written by the device: untrusted).
app    - this app's own markers; nobody else writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sync.constraints import DEVICE_ID, JsonObject, ListOf, Text, ValueConstraint


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
    constraint: ValueConstraint | None = None
    """For device-owned fields: what a reported value must look like; `null` (removed) always
    passes. A value that does not fit is refused, never copied or compared."""

    @property
    def twin_name(self) -> str:
        return ".".join(self.twin_path)


_ASSET_WINS = "asset wins: the twin is rewritten from the current asset, never the reverse"
_DEVICE_WINS = "device wins: the newest reported value is copied to the asset (If-Match)"
_APP_ONLY = "app only: written by this app, ignored when anyone else changes it"

FIRMWARE_VERSION = Text(1, 64, r"A-Za-z0-9._+-")
"""Semantic versions with pre-release and build parts (1.2.3-rc.1+b5) and vendor build tags."""
HEALTH = Text(1, 32, r"A-Za-z0-9_-")
"""A short status word: ok, degraded, sentinel-1a2b3c."""
CONFIGURATION = JsonObject(
    max_chars=4096, max_depth=5, max_entries=128, key=Text(1, 64, r"A-Za-z0-9_-"), max_string=256
)
"""A handful of settings, not a document: 4 KiB is an eighth of IoT Hub's 32 KiB reported
section. Keys are identifier-like (twin keys already exclude `.`, `$` and spaces)."""
CONNECTED_DEVICES = ListOf(DEVICE_ID, max_items=250)
"""250 ids of up to 128 characters is about what fits IoT Hub's 32 KiB reported section."""
SERIAL_NUMBER = Text(1, 128, r" -~", "printable ASCII")
"""What allocation accepts as a certificate's subject serialNumber, and the asset's bound."""

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
    FieldRule(("tags", "pendingSince"), Owner.APP, None, _APP_ONLY + " (fallback admission time)"),
    FieldRule(("tags", "refusedAt"), Owner.APP, None, _APP_ONLY + " (reconciliation refused it)"),
    FieldRule(
        ("properties", "reported", "firmwareVersion"),
        Owner.DEVICE,
        ("attributes", "firmwareVersion"),
        _DEVICE_WINS,
        constraint=FIRMWARE_VERSION,
    ),
    FieldRule(
        ("properties", "reported", "health"),
        Owner.DEVICE,
        ("attributes", "health"),
        _DEVICE_WINS,
        constraint=HEALTH,
    ),
    FieldRule(
        ("properties", "reported", "configuration"),
        Owner.DEVICE,
        ("attributes", "configuration"),
        _DEVICE_WINS + "; only when the role allows configuration",
        required_action="configuration.limited",
        constraint=CONFIGURATION,
    ),
    FieldRule(
        ("properties", "reported", "connectedDevices"),
        Owner.DEVICE,
        ("attributes", "connectedDevices"),
        _DEVICE_WINS + "; only when the role relays for other devices",
        required_action="commands.relay",
        constraint=CONNECTED_DEVICES,
    ),
    FieldRule(
        ("properties", "reported", "serialNumber"),
        Owner.DEVICE,
        None,
        "checked, never copied: a mismatch with the asset's serial is logged as an anomaly",
        constraint=SERIAL_NUMBER,
    ),
)

DEVICE_REPORTED: dict[str, FieldRule] = {
    rule.twin_path[-1]: rule
    for rule in FIELD_OWNERSHIP
    if rule.owner is Owner.DEVICE and rule.twin_path[:2] == ("properties", "reported")
}
"""Reported property name -> rule, for the twin -> asset direction."""


def _check_table() -> None:
    seen: set[tuple[str, ...]] = set()
    for rule in FIELD_OWNERSHIP:
        if rule.twin_path in seen:
            raise RuntimeError(f"{rule.twin_name} has two owners in FIELD_OWNERSHIP")
        seen.add(rule.twin_path)
        if (rule.owner is Owner.DEVICE) != (rule.constraint is not None):
            raise RuntimeError(
                f"{rule.twin_name}: every device-owned field, and only those, needs a constraint"
            )


_check_table()
