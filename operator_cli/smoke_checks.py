"""What a healthy onboarding looks like to the smoke test (pure): each check names its problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.entry import AuditEntry
from operator_cli.errors import OperatorError

DECIDED = "allocation.decided"


class CheckFailed(OperatorError):
    """A smoke check found something wrong; the message says what."""


@dataclass(frozen=True)
class Assignment:
    device_id: str
    hub: str
    payload: Mapping[str, Any]


def assignment(state: Mapping[str, Any], registration_id: str, hubs: Sequence[str]) -> Assignment:
    """DPS assigned the device to one of `hubs` (any hub when empty) under its own id."""
    status = state.get("status")
    if status != "assigned":
        raise CheckFailed(
            f"DPS did not assign the device: status {status!r}, errorCode "
            f"{state.get('errorCode')!r}, {state.get('errorMessage')!r}"
        )
    device_id, hub = state.get("deviceId"), state.get("assignedHub")
    if device_id != registration_id:
        raise CheckFailed(f"DPS assigned device id {device_id!r}, not {registration_id!r}")
    if not isinstance(hub, str) or not hub:
        raise CheckFailed("DPS assigned no hub")
    if hubs and hub.casefold() not in {name.casefold() for name in hubs}:
        raise CheckFailed(f"DPS assigned hub {hub}, which is not one of {', '.join(hubs)}")
    payload = state.get("payload")
    return Assignment(device_id, hub, payload if isinstance(payload, Mapping) else {})


def initial_twin(
    tags: Mapping[str, Any], desired: Mapping[str, Any], asset_id: str, payload: Mapping[str, Any]
) -> str:
    """The webhook's initial twin reached the hub: the asset, the role, provisioned."""
    if tags.get("assetId") != asset_id:
        raise CheckFailed(f"twin tag assetId is {tags.get('assetId')!r}, not {asset_id!r}")
    if tags.get("provisioningState") != "provisioned":
        raise CheckFailed(
            f"twin tag provisioningState is {tags.get('provisioningState')!r}, not 'provisioned'"
        )
    role = tags.get("deviceRole")
    if not role or role != payload.get("deviceRole"):
        raise CheckFailed(
            f"twin tag deviceRole {role!r} differs from the webhook's {payload.get('deviceRole')!r}"
        )
    if not isinstance(desired.get("rolePermissions"), Mapping):
        raise CheckFailed("the twin's desired properties carry no rolePermissions")
    return str(role)


def asset_link(asset: Mapping[str, Any], device_id: str) -> None:
    """The asset names the device as its own."""
    if asset.get("deviceId") != device_id:
        raise CheckFailed(
            f"asset {asset.get('assetId')} is linked to {asset.get('deviceId')!r}, "
            f"not {device_id!r}"
        )


def audit_entry(entries: Sequence[AuditEntry], device_id: str, hub: str) -> AuditEntry | None:
    """The trail's record of the decision for this device on this hub, if written yet."""
    for entry in entries:
        if (
            entry.action == DECIDED
            and entry.device_id == device_id
            and (entry.hub or "").casefold() == hub.casefold()
        ):
            return entry
    return None
