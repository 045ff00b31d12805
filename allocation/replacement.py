"""Hardware replacement: judge a device's `replacementFor` claim against the asset system.

The payload is written by the device and NOT attested, so a claim alone proves nothing. It is
accepted only when the asset system approved it for this very hardware: the asset is
pendingReplacement naming that old device, the approval names the new certificate's subject
serialNumber or thumbprint (an approval naming neither is refused unless the policy opens a
short window), and it has not expired. Approvals are single-use: the asset system clears one
as it links the new device. A device re-keyed with the same serial but no claim is a
replacement only if the policy says so. Pure; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allocation.contract import DeviceId
from allocation.errors import AttestationError, ReplacementRefused
from allocation.identity import DeviceIdentity
from asset_client import Asset, AssetStatus
from asset_client.models import normalized_thumbprint
from policies import ReplacementPolicy

_CLAIM_FIELD = "deviceRuntimeContext.payload.replacementFor"
MAX_DEVICE_REASON = 256
_UNPRINTABLE = re.compile(r"[^\x20-\x7E]")

ApprovalRule = Literal[
    "no-asset-holds-old-device",
    "no-approval",
    "approval-for-another-device",
    "approval-without-date",
    "approval-expired",
    "approval-unbound",
    "serial-mismatch",
    "thumbprint-mismatch",
]


def sanitised_reason(text: str) -> str:
    """The device's own words, reduced to printable ASCII and capped: only ever data."""
    return _UNPRINTABLE.sub("?", text)[:MAX_DEVICE_REASON]


class ReplacementClaim(BaseModel):
    """`payload.replacementFor`: which device this one replaces, and the reason it gives."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device_id: DeviceId = Field(alias="deviceId")
    reason: str = ""

    @field_validator("reason")
    @classmethod
    def _sanitise(cls, value: str) -> str:
        return sanitised_reason(value)


@dataclass(frozen=True)
class Replacement:
    """An accepted replacement: link the new device in place of the old one."""

    old_device_id: str
    reason: str
    """The technician's reason (from the approval), or the policy's for a re-key."""
    approved_by: Literal["asset system", "policy"]
    device_reason: str | None = None
    """What the device claimed, sanitised; recorded apart from `reason`."""


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
    claim: ReplacementClaim,
    asset: Asset | None,
    identity: DeviceIdentity,
    policy: ReplacementPolicy,
    *,
    now: datetime,
) -> Replacement:
    """Accept only what the asset system approved for this hardware; anything else is refused.

    The refusal's detail names the rule broken (for the log and the trail); what DPS relays to
    the device names none of the asset's data.
    """
    old = claim.device_id
    if asset is None:
        raise _refused("no-asset-holds-old-device", f"no asset holds device {old!r}")
    approval = asset.replacement
    if asset.status != AssetStatus.PENDING_REPLACEMENT or approval is None:
        raise _refused(
            "no-approval", f"asset {asset.asset_id!r} has no approved replacement for {old!r}"
        )
    if approval.old_device_id != old:
        raise _refused(
            "approval-for-another-device",
            f"asset {asset.asset_id!r} approved replacing {approval.old_device_id!r}, not {old!r}",
        )
    if approval.approved_at is None:
        raise _refused(
            "approval-without-date", f"asset {asset.asset_id!r}'s approval has no approvedAt"
        )
    age = now - approval.approved_at
    if age > timedelta(hours=policy.approval_ttl_hours):
        raise _refused(
            "approval-expired",
            f"asset {asset.asset_id!r}'s approval of {approval.approved_at.isoformat()} is older "
            f"than replacement.approval_ttl_hours ({policy.approval_ttl_hours:g} h)",
        )
    serial = identity.subject_serial_number.value if identity.subject_serial_number else None
    if approval.approved_serial is None and approval.approved_thumbprint is None:
        window = timedelta(minutes=policy.unbound_window_minutes)
        if policy.unbound_approvals != "window" or age > window:
            raise _refused(
                "approval-unbound",
                f"asset {asset.asset_id!r}'s approval names neither serial nor thumbprint "
                f"(replacement.unbound_approvals = {policy.unbound_approvals!r})",
            )
    if approval.approved_serial is not None and approval.approved_serial != serial:
        raise _refused(
            "serial-mismatch",
            f"asset {asset.asset_id!r} approved another serial than this certificate's {serial!r}",
        )
    if approval.approved_thumbprint is not None and not _same_certificate(
        approval.approved_thumbprint, identity
    ):
        raise _refused(
            "thumbprint-mismatch",
            f"asset {asset.asset_id!r} approved another certificate thumbprint",
        )
    return Replacement(
        old_device_id=old,
        reason=approval.reason or "replacement approved",
        approved_by="asset system",
        device_reason=claim.reason or None,
    )


def rekeyed(asset: Asset, policy: ReplacementPolicy) -> Replacement | None:
    """Same serial, another device id, no claim: a re-keyed device if the policy says so."""
    if policy.same_serial != "replace" or asset.device_id is None:
        return None
    if asset.status == AssetStatus.RETIRED:
        return None
    return Replacement(
        old_device_id=asset.device_id,
        reason=f"re-keyed: the same serial {asset.serial_number} on a new certificate",
        approved_by="policy",
    )


def _same_certificate(approved: str, identity: DeviceIdentity) -> bool:
    wanted = normalized_thumbprint(approved)
    presented = identity.sha256_thumbprint if len(wanted) == 64 else identity.sha1_thumbprint
    return presented is not None and normalized_thumbprint(presented.value) == wanted


def _refused(rule: ApprovalRule, detail: str) -> ReplacementRefused:
    return ReplacementRefused(detail, rule=rule)
