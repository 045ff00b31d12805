"""Hardware replacement: judge a device's `replacementFor` claim against the asset system.

The payload is written by the device and NOT attested, so a claim alone proves nothing: it
is accepted only when the asset system approved it (the asset is pendingReplacement naming
that old device, and any approved serial is the new certificate's). A device re-keyed with
the same serial but no claim is a replacement only if the policy says so. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocation.contract import DeviceId
from allocation.errors import AttestationError, ReplacementRefused
from allocation.identity import DeviceIdentity
from asset_client import Asset, AssetStatus

_CLAIM_FIELD = "deviceRuntimeContext.payload.replacementFor"


class ReplacementClaim(BaseModel):
    """`payload.replacementFor`: which device this one replaces, and why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device_id: DeviceId = Field(alias="deviceId")
    reason: str = Field("", max_length=256)


@dataclass(frozen=True)
class Replacement:
    """An accepted replacement: link the new device in place of the old one."""

    old_device_id: str
    reason: str
    approved_by: str
    """"asset system" (an approved replacement) or "policy" (same serial, re-keyed)."""


def read_claim(payload: dict[str, Any] | None) -> ReplacementClaim | None:
    if not payload or "replacementFor" not in payload:
        return None
    try:
        return ReplacementClaim.model_validate(payload["replacementFor"])
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AttestationError(
            f"{_CLAIM_FIELD}{'.' + where if where else ''}", first["msg"]
        ) from exc


def judge_claim(
    claim: ReplacementClaim, asset: Asset | None, identity: DeviceIdentity
) -> Replacement:
    """Accept only what the asset system approved; anything else is a spoofing attempt."""
    old = claim.device_id
    if asset is None:
        raise ReplacementRefused(f"replacementFor names device {old!r}, which no asset holds")
    approval = asset.replacement
    if asset.status != AssetStatus.PENDING_REPLACEMENT or approval is None:
        raise ReplacementRefused(
            f"asset {asset.asset_id!r} has no approved replacement for device {old!r}"
        )
    if approval.old_device_id != old:
        raise ReplacementRefused(
            f"asset {asset.asset_id!r} approved replacing {approval.old_device_id!r}, not {old!r}"
        )
    serial = identity.subject_serial_number.value if identity.subject_serial_number else None
    if approval.approved_serial is not None and approval.approved_serial != serial:
        raise ReplacementRefused(
            f"asset {asset.asset_id!r} approved serial {approval.approved_serial!r}; "
            f"this certificate's subject serialNumber is {serial!r}"
        )
    return Replacement(
        old_device_id=old,
        reason=claim.reason or approval.reason or "replacement",
        approved_by="asset system",
    )


def rekeyed(asset: Asset, identity: DeviceIdentity, policy: str) -> Replacement | None:
    """Same serial, another device id, no claim: a re-keyed device if the policy says so."""
    if policy != "replace" or asset.device_id is None:
        return None
    if asset.status == AssetStatus.RETIRED:
        return None
    return Replacement(
        old_device_id=asset.device_id,
        reason=f"re-keyed: the same serial {asset.serial_number} on a new certificate",
        approved_by="policy",
    )
