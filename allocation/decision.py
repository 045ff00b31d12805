"""The allocation decision: identity + asset + policy -> hub, role and initial twin. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from allocation.contract import AllocationRequest, AllocationResponse
from allocation.errors import AssetNotAssignable, NoHubForDevice, UnknownDevice
from allocation.hub_selection import HubChoice, select_hub, spread
from allocation.identity import DeviceIdentity
from allocation.replacement import Replacement
from asset_client import Asset, AssetStatus, DeviceLink
from device_twin import (
    DesiredProperties,
    DeviceTags,
    InitialTwin,
    ProvisioningState,
    TwinProperties,
    asset_owned_fields,
    format_twin_timestamp,
)
from policies import Policy
from roles import RoleAssignment, assign_role


@dataclass(frozen=True)
class AllocationDecision:
    """What to answer DPS, and the asset link to record first (None when nothing changes)."""

    identity: DeviceIdentity
    asset: Asset | None
    role: RoleAssignment
    hub: HubChoice
    provisioning_state: ProvisioningState
    link: DeviceLink | None
    response: AllocationResponse
    replacement: Replacement | None = None

    @property
    def device_id(self) -> str:
        return self.identity.device_id.value


def decide_allocation(
    *,
    request: AllocationRequest,
    identity: DeviceIdentity,
    asset: Asset | None,
    policy: Policy,
    asset_api_public_url: str,
    replacement: Replacement | None = None,
) -> AllocationDecision:
    """Deterministic: the same request and asset give the same answer, so DPS retries are safe.

    An accepted `replacement` lets the device take an asset another device holds.
    """
    context = request.device_runtime_context
    device_id = identity.device_id.value
    if asset is None:
        if policy.unknown_device == "reject":
            serial = identity.subject_serial_number
            raise UnknownDevice(
                f"no asset for device {device_id!r}"
                + (f" or subject serialNumber {serial.value!r}" if serial else "")
                + " and policy unknown_device is 'reject'"
            )
        role = assign_role(None, policy.role_rules, policy.default_role)
        hub = spread(
            request.linked_hubs,
            identity.registration_id,
            context.current_iot_hub_host_name,
            "unknown device quarantined",
        )
        state = ProvisioningState.QUARANTINED
        link = None
    else:
        if replacement is None:
            check_assignable(asset, device_id)
        elif asset.status is AssetStatus.RETIRED:
            raise AssetNotAssignable(
                f"asset {asset.asset_id!r} is retired", public="the asset of this device is retired"
            )
        role = assign_role(asset.asset_type, policy.role_rules, policy.default_role)
        hub = select_hub(
            location=asset.location,
            linked_hubs=request.linked_hubs,
            rules=policy.hub_rules,
            fallback=policy.hub_fallback,
            registration_id=identity.registration_id,
            current_hub=context.current_iot_hub_host_name,
        )
        state = ProvisioningState.PROVISIONED
        link = _link_needed(asset, identity, replacement)
    response = _response(asset, None, role, hub, state, policy, asset_api_public_url)
    return AllocationDecision(identity, asset, role, hub, state, link, response, replacement)


def decide_fallback(
    *,
    request: AllocationRequest,
    identity: DeviceIdentity,
    policy: Policy,
    known_location: str | None,
    pending_since: datetime,
) -> AllocationDecision:
    """The asset system is down: least privilege now, the real role after reconciliation.

    The hub follows the policy when the location is known (from an earlier lookup), else the
    stable spread. `pending_since` is stamped on the twin, so that a device still pending after
    the policy's deadline can be found and disabled.
    """
    context = request.device_runtime_context
    role = assign_role(None, policy.role_rules, policy.default_role)
    hub = None
    if known_location is not None:
        try:
            hub = select_hub(
                location=known_location,
                linked_hubs=request.linked_hubs,
                rules=policy.hub_rules,
                fallback=policy.hub_fallback,
                registration_id=identity.registration_id,
                current_hub=context.current_iot_hub_host_name,
            )
        except NoHubForDevice:
            hub = None
    if hub is None:
        hub = spread(
            request.linked_hubs,
            identity.registration_id,
            context.current_iot_hub_host_name,
            "asset system unavailable",
        )
    state = ProvisioningState.PENDING_RECONCILIATION
    response = _response(None, known_location, role, hub, state, policy, "", pending_since)
    return AllocationDecision(identity, None, role, hub, state, None, response)


def _response(
    asset: Asset | None,
    known_location: str | None,
    role: RoleAssignment,
    hub: HubChoice,
    state: ProvisioningState,
    policy: Policy,
    asset_api_public_url: str,
    pending_since: datetime | None = None,
) -> AllocationResponse:
    owned = asset_owned_fields(asset, role, asset_api_public_url) if asset else None
    tags = DeviceTags(
        asset_id=owned.asset_id if owned else None,
        asset_type=owned.asset_type if owned else None,
        location=owned.location if owned else known_location,
        device_role=role.role,
        provisioning_state=state,
        hub_selection=hub.selection,
        policy_version=policy.version,
        pending_since=format_twin_timestamp(pending_since) if pending_since else None,
    )
    desired = DesiredProperties(
        role_permissions=role.permissions,
        asset_management_endpoint=owned.asset_management_endpoint if owned else None,
    )
    payload: dict[str, Any] = {"deviceRole": role.role.value, "provisioningState": state.value}
    if asset:
        payload["assetId"] = asset.asset_id
    return AllocationResponse(
        iot_hub_host_name=hub.hub,
        initial_twin=InitialTwin(tags=tags, properties=TwinProperties(desired=desired)),
        payload=payload,
    )


def check_assignable(asset: Asset, device_id: str) -> None:
    """Raise AssetNotAssignable when the asset cannot take this device."""
    if asset.status is AssetStatus.RETIRED:
        raise AssetNotAssignable(
            f"asset {asset.asset_id!r} is retired", public="the asset of this device is retired"
        )
    if asset.device_id is not None and not _same_device(asset.device_id, device_id):
        raise AssetNotAssignable(
            f"asset {asset.asset_id!r} is linked to device {asset.device_id!r}; "
            "another device needs an approved replacement",
            public="the asset of this device is linked to another device; taking it over "
            "needs an approved replacement (payload.replacementFor)",
        )


def _same_device(a: str, b: str) -> bool:
    # Device ids come from registration ids here, which DPS compares case-insensitively.
    return a.casefold() == b.casefold()


def _link_needed(
    asset: Asset, identity: DeviceIdentity, replacement: Replacement | None
) -> DeviceLink | None:
    already = (
        asset.device_id is not None
        and _same_device(asset.device_id, identity.device_id.value)
        and asset.provisioning_status == "provisioned"
    )
    if already:
        return None
    serial = identity.subject_serial_number
    return DeviceLink(
        device_id=identity.device_id.value,
        registration_id=identity.registration_id,
        thumbprint=identity.thumbprint,
        sha1_thumbprint=identity.sha1_thumbprint.value if identity.sha1_thumbprint else None,
        serial_number=serial.value if serial else None,
        replacement_for=replacement.old_device_id if replacement else None,
        device_reason=replacement.device_reason if replacement else None,
    )
