"""Asset -> twin: which write (if any) brings a twin up to its asset. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from allocation.errors import NoHubForDevice
from allocation.hub_selection import select_hub
from asset_client import Asset
from device_twin import ReprovisionRequest, SyncMarker, asset_owned_fields
from iothub_client import Twin, TwinPatch
from policies import Policy
from roles import assign_role


@dataclass(frozen=True)
class TwinPlan:
    patch: TwinPatch | None
    reason: str
    changed: tuple[str, ...] = ()
    reprovision: ReprovisionRequest | None = None


@dataclass(frozen=True)
class TwinPlanner:
    """What a twin's plan depends on besides the twin and the asset: the policy, the asset API's
    public address and the hubs the app serves."""

    policy: Policy
    asset_api_public_url: str
    hub_names: tuple[str, ...]

    def plan(self, twin: Twin, asset: Asset, current_hub: str) -> TwinPlan:
        return plan_twin_update(
            twin=twin,
            asset=asset,
            policy=self.policy,
            asset_api_public_url=self.asset_api_public_url,
            current_hub=current_hub,
            hubs=self.hub_names,
        )


def read_marker(value: Any) -> SyncMarker | None:
    """A marker someone else mangled counts as no marker: the content diff still decides."""
    if not isinstance(value, Mapping):
        return None
    try:
        return SyncMarker.model_validate(value)
    except ValidationError:
        return None


def plan_twin_update(
    *,
    twin: Twin,
    asset: Asset,
    policy: Policy,
    asset_api_public_url: str,
    current_hub: str,
    hubs: Sequence[str],
) -> TwinPlan:
    """Asset wins for every asset-owned field. Nothing is written when nothing differs.

    The marker stops a slow handler holding an older asset version from overwriting a newer
    one written meanwhile (events are at-least-once and unordered).
    """
    marker = read_marker(twin.tags.get("sync"))
    if marker is not None and marker.asset_version >= asset.version:
        return TwinPlan(
            None, f"twin reflects asset version {marker.asset_version} >= {asset.version}"
        )
    role = assign_role(asset.asset_type, policy.role_rules, policy.default_role)
    owned = asset_owned_fields(asset, role, asset_api_public_url)
    tags = _differences(twin.tags, owned.tags())
    desired = _differences(twin.desired, owned.desired())

    reprovision = _reprovision(twin, asset, policy, current_hub, hubs)
    current_request = twin.desired.get("reprovision")
    if reprovision is not None:
        wanted = reprovision.model_dump(by_alias=True)
        if not _same_request(current_request, wanted):
            desired["reprovision"] = wanted
    elif current_request is not None:
        desired["reprovision"] = None

    changed = tuple(f"tags.{key}" for key in tags) + tuple(f"desired.{key}" for key in desired)
    if not changed:
        return TwinPlan(None, "twin already matches the asset")
    marker_now = SyncMarker(asset_version=asset.version, hash=owned.content_hash())
    tags["sync"] = marker_now.model_dump(by_alias=True)
    return TwinPlan(
        TwinPatch(tags=tags, desired=desired or None),
        "asset changed: " + ", ".join(changed),
        changed,
        reprovision,
    )


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch: keys whose value differs; None deletes a key that is present."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        if value is None:
            if current.get(key) is not None:
                patch[key] = None
        elif current.get(key) != value:
            patch[key] = value
    return patch


def _reprovision(
    twin: Twin, asset: Asset, policy: Policy, current_hub: str, hubs: Sequence[str]
) -> ReprovisionRequest | None:
    """When the asset's location now maps to another hub, ask the device to register again."""
    try:
        choice = select_hub(
            location=asset.location,
            linked_hubs=list(hubs),
            rules=policy.hub_rules,
            fallback=policy.hub_fallback,
            registration_id=twin.device_id,
            current_hub=current_hub,
        )
    except NoHubForDevice:
        return None  # the policy has no home for this location: do not move the device
    if choice.hub.lower() == current_hub.lower():
        return None
    return ReprovisionRequest(
        required=True,
        target_hub=choice.hub,
        reason=f"location {asset.location!r} is served by {choice.hub}",
        asset_version=asset.version,
    )


def _same_request(current: Any, wanted: Mapping[str, Any]) -> bool:
    if not isinstance(current, Mapping):
        return False
    return bool(current.get("required")) and current.get("targetHub") == wanted["targetHub"]
