"""When a new device may take an asset over from its linked device; pure rules, no I/O.

Device payloads are not attested, so only an approval recorded on the asset allows a swap,
and only for the hardware it names, only while it is fresh, and only once (the swap clears it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import problems
from .model import Asset, AssetStatus, ReplacementTerms, format_timestamp, parse_timestamp
from .problems import Problem
from .validation import SHA256_HEX_DIGITS, LinkRequest

DEFAULT_APPROVAL_TTL = timedelta(hours=72)
# Ten years: far beyond any sensible setting, and far from datetime's year 9999 limit.
MAX_APPROVAL_DURATION = timedelta(days=3650)


@dataclass(frozen=True)
class ApprovalPolicy:
    """How long an approval stays usable, and how long one that names no hardware does."""

    ttl: timedelta = DEFAULT_APPROVAL_TTL
    unbound_window: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.ttl <= MAX_APPROVAL_DURATION:
            raise ValueError(
                f"the approval TTL must be positive and at most {MAX_APPROVAL_DURATION}"
            )
        if not timedelta(0) <= self.unbound_window <= MAX_APPROVAL_DURATION:
            raise ValueError(
                f"the unbound approval window must be from 0 to {MAX_APPROVAL_DURATION}"
            )


def _refusal(type_: str, title: str, detail: str, linked: str, rule: str) -> Problem:
    return Problem(
        409,
        detail,
        type_=type_,
        title=title,
        extensions={"linkedDeviceId": linked, "rule": rule},
    )


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g}"


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def approved_takeover(
    current: Asset, request: LinkRequest, linked: str, now: datetime, policy: ApprovalPolicy
) -> ReplacementTerms:
    """The approval that lets `request` replace device `linked`, or the Problem refusing it.

    Details name the rule that failed but never the approved serial or thumbprint: a device
    probing for them learns nothing it could present next time.
    """
    asset_id = current.asset_id
    if request.replacement_for is None:
        raise Problem(
            409,
            f"asset {asset_id} is already linked to device {linked}; replacing it needs "
            f"replacementFor={linked} and an approved replacement",
            type_=problems.DEVICE_CONFLICT,
            title="Another device is linked",
            extensions={"linkedDeviceId": linked},
        )
    if request.replacement_for != linked:
        raise Problem(
            409,
            f"replacementFor {request.replacement_for} is not the device linked to asset "
            f"{asset_id} (device {linked} is)",
            type_=problems.DEVICE_CONFLICT,
            title="Another device is linked",
            extensions={"linkedDeviceId": linked},
        )
    terms = current.draft.replacement
    stamped = current.replacement_approved_at
    if (
        current.draft.status is not AssetStatus.PENDING_REPLACEMENT
        or terms is None
        or terms.old_device_id != linked
        or stamped is None
    ):
        raise _refusal(
            problems.REPLACEMENT_NOT_APPROVED,
            "Replacement not approved",
            f"asset {asset_id} is linked to device {linked} and has no approved replacement "
            f"for it (status {current.draft.status.value}); an approval admits one device, once",
            linked,
            "approval",
        )
    approved_at = parse_timestamp(stamped)
    expires_at = approved_at + policy.ttl
    if now > expires_at:
        raise _refusal(
            problems.REPLACEMENT_APPROVAL_EXPIRED,
            "Replacement approval expired",
            f"the replacement approval for device {linked} on asset {asset_id} expired at "
            f"{format_timestamp(expires_at)}: approvals are valid for "
            f"{_hours(policy.ttl)} hours after approvedAt; approve the replacement again",
            linked,
            "approvalTtl",
        )
    if terms.bound:
        _check_hardware(terms, request, linked, asset_id)
        return terms
    window = policy.unbound_window
    if window <= timedelta(0) or now > approved_at + window:
        allowed = (
            "refuses such approvals"
            if window <= timedelta(0)
            else f"accepts such an approval only within {_seconds(window)} seconds after approvedAt"
        )
        raise _refusal(
            problems.REPLACEMENT_APPROVAL_UNBOUND,
            "Replacement approval unbound",
            f"the replacement approval for device {linked} on asset {asset_id} names neither "
            f"approvedSerial nor approvedThumbprint, and this service {allowed}",
            linked,
            "unboundApprovalWindow",
        )
    return terms


def _check_hardware(
    terms: ReplacementTerms, request: LinkRequest, linked: str, asset_id: str
) -> None:
    subject = f"the replacement approval for device {linked} on asset {asset_id}"
    serial = terms.approved_serial
    if serial is not None and request.serial_number != serial:
        presented = "does not match" if request.serial_number is not None else "is missing"
        raise _refusal(
            problems.REPLACEMENT_HARDWARE_MISMATCH,
            "Replacement hardware mismatch",
            f"{subject} is bound to the new certificate's serial number, and the request's "
            f"serialNumber {presented}",
            linked,
            "approvedSerial",
        )
    approved = terms.approved_thumbprint
    if approved is None:
        return
    kind = "SHA-256" if len(approved) == SHA256_HEX_DIGITS else "SHA-1"
    same_kind = [
        thumbprint
        for thumbprint in (request.thumbprint, request.sha1_thumbprint)
        if thumbprint is not None and len(thumbprint) == len(approved)
    ]
    if approved not in same_kind:
        presented = "does not match" if same_kind else "is missing"
        raise _refusal(
            problems.REPLACEMENT_HARDWARE_MISMATCH,
            "Replacement hardware mismatch",
            f"{subject} is bound to the new certificate's {kind} thumbprint, and the request's "
            f"{kind} thumbprint {presented}",
            linked,
            "approvedThumbprint",
        )
