"""Twin -> asset: what a twin change means for the asset. Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asset_client import Asset
from roles import RolePermissions, authorize
from sync.events import TwinChange
from sync.ownership import DEVICE_REPORTED


@dataclass(frozen=True)
class InvalidValue:
    """A reported value that breaks its field's constraint: named by field and rule only."""

    field: str
    rule: str
    violation: str


@dataclass(frozen=True)
class AssetPlan:
    patch: dict[str, Any] | None
    copied: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    invalid: tuple[InvalidValue, ...] = ()
    serial_mismatch: bool = False
    notes: list[str] = field(default_factory=list)


def is_own_echo(change: TwinChange) -> bool:
    """Our sync writes touch tags and desired only, always with tags.sync: that is the echo."""
    return change.reported is None and change.sync_marker is not None


def plan_asset_update(change: TwinChange, asset: Asset, permissions: RolePermissions) -> AssetPlan:
    """Copy device-owned reported values that differ from the asset; ignore everything else.

    A value its role does not allow is refused, one that breaks its constraint is invalid;
    either way the other fields of the change still count. Identical reported writes still
    raise events (docs/contracts.md, "Twin-change notifications"): they plan no write.
    """
    attributes: dict[str, Any] = {}
    copied: list[str] = []
    ignored: list[str] = []
    refused: list[tuple[str, str]] = []
    invalid: list[InvalidValue] = []
    serial_mismatch = False
    for key, value in (change.reported or {}).items():
        rule = DEVICE_REPORTED.get(key)
        if rule is None:
            ignored.append(key)
            continue
        if rule.required_action and not authorize(permissions, rule.required_action):
            refused.append((key, rule.required_action))
            continue
        if value is not None and rule.constraint is not None:
            violation = rule.constraint.violation(value)
            if violation is not None:
                invalid.append(InvalidValue(key, rule.constraint.description, violation))
                continue
        if rule.asset_path is None:
            serial_mismatch = serial_mismatch or (
                value is not None and value != asset.serial_number
            )
            continue
        name = rule.asset_path[-1]
        if asset.attributes.get(name) != value and not (
            value is None and name not in asset.attributes
        ):
            attributes[name] = value
            copied.append(key)
    return AssetPlan(
        patch={"attributes": attributes} if attributes else None,
        copied=tuple(copied),
        ignored=tuple(ignored),
        refused=tuple(refused),
        invalid=tuple(invalid),
        serial_mismatch=serial_mismatch,
    )
