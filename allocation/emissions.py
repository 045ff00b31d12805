"""What an allocation leaves behind besides its answer: queue messages and audit entries. Pure.

The service decides which refusals are dead-lettered and what each outcome records; these
functions only build the records. Device-written data (payload keys, a claimed reason) and
request-sized lists (linkedHubs) are capped so that every message fits a queue message.
"""

from __future__ import annotations

import re
from typing import Any

from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision
from allocation.errors import (
    AllocationDeferred,
    AllocationError,
    AttestationError,
    ReplacementRefused,
)
from allocation.identity import DeviceIdentity
from allocation.replacement import Replacement, read_claim
from audit import AuditEntry
from messages import DeadLetter, ReconciliationMessage
from messages.emission import Emission

MAX_LISTED_HUBS = 20
MAX_LISTED_PAYLOAD_KEYS = 20
MAX_KEY_CHARS = 64
_UNPRINTABLE = re.compile(r"[^\x20-\x7E]")


def printable(text: str, limit: int) -> str:
    """Device-written text as data: printable ASCII only, capped."""
    return _UNPRINTABLE.sub("?", text)[:limit]


def allocated(
    request: AllocationRequest, decision: AllocationDecision, request_id: str
) -> Emission:
    return Emission.of_audit(_outcome_entries(request, decision, None, request_id))


def fallback(
    request: AllocationRequest, decision: AllocationDecision, outage: str, request_id: str
) -> Emission:
    """A reconciliation message to finish the allocation later, and the decision's entry."""
    identity = decision.identity
    message = ReconciliationMessage(
        kind="allocation",
        reason="asset system unavailable",
        detail=outage[:2000],
        device_id=identity.device_id.value,
        hub=decision.hub.hub,
        request_id=request_id or None,
        event=allocation_summary(request, identity, decision.hub.hub),
    )
    return Emission(
        reconciliation=(message,),
        audit=tuple(_outcome_entries(request, decision, outage, request_id)),
    )


def refused(request: AllocationRequest, error: AllocationError, request_id: str) -> Emission:
    """A refusal is dead-lettered and audited. A deferral is no decision yet (DPS retries it,
    up to ten times a registration): it leaves only its log line, so that the outage fast path
    writes nothing."""
    if isinstance(error, AllocationDeferred):
        return Emission()
    entries = tuple(_refusal_entries(request, error, request_id))
    return Emission(dead_letters=(_dead_letter(request, error, request_id),), audit=entries)


def deregistration(
    replacement: Replacement,
    *,
    new_device_id: str,
    asset_id: str,
    action: str,
    request_id: str,
) -> ReconciliationMessage:
    """The replaced device's removal, recorded before the link that replaces it: the reconciler
    carries it out only once the asset names the new device."""
    return ReconciliationMessage(
        kind="deregistration",
        reason=f"replaced by {new_device_id}",
        detail=replacement.reason[:2000],
        device_id=replacement.old_device_id,
        asset_id=asset_id,
        request_id=request_id or None,
        event={
            "oldDeviceId": replacement.old_device_id,
            "newDeviceId": new_device_id,
            "assetId": asset_id,
            "action": action,
            "approvedBy": replacement.approved_by,
            "reason": replacement.reason[:1024],
            "deviceReason": replacement.device_reason,
        },
    )


def allocation_summary(
    request: AllocationRequest, identity: DeviceIdentity, hub: str | None
) -> dict[str, Any]:
    """What reconciliation and operators need to know about a registration; no secrets."""
    context = request.device_runtime_context
    return {
        "registrationId": identity.registration_id,
        "deviceId": identity.device_id.value,
        "subjectSerialNumber": (
            identity.subject_serial_number.value if identity.subject_serial_number else None
        ),
        "thumbprint": identity.thumbprint,
        "sha1Thumbprint": identity.sha1_thumbprint.value if identity.sha1_thumbprint else None,
        "assignedHub": hub,
        **_hubs(request),
        "currentHub": context.current_iot_hub_host_name,
        "enrollment": _enrollment(request),
        "attestation": identity.attestation_kind,
        "provenance": identity.provenance(),
    }


def _dead_letter(request: AllocationRequest, error: AllocationError, request_id: str) -> DeadLetter:
    context = request.device_runtime_context
    payload = context.payload or {}
    return DeadLetter(
        source="allocation",
        kind="allocation",
        reason=error.code,
        detail=error.detail[:2000],
        registration_id=context.registration_id,
        device_id=request.enrollment.device_id or context.registration_id,
        request_id=request_id,
        request={
            "registrationId": context.registration_id,
            "enrollment": _enrollment(request),
            "attestation": context.attestation_kind,
            **_hubs(request),
            "currentHub": context.current_iot_hub_host_name,
            "payloadKeys": [
                printable(key, MAX_KEY_CHARS) for key in sorted(payload)[:MAX_LISTED_PAYLOAD_KEYS]
            ],
            "payloadKeyCount": len(payload),
            "field": error.field if isinstance(error, AttestationError) else None,
            "rule": error.rule if isinstance(error, ReplacementRefused) else None,
        },
        # The device must register again once the cause is fixed; replaying cannot help.
        replayable=False,
    )


def _outcome_entries(
    request: AllocationRequest,
    decision: AllocationDecision,
    fallback_reason: str | None,
    request_id: str,
) -> list[AuditEntry]:
    identity = decision.identity
    common = {
        "registration_id": identity.registration_id,
        "device_id": identity.device_id.value,
        "asset_id": decision.asset.asset_id if decision.asset else None,
        "hub": decision.hub.hub,
        "request_id": request_id or None,
    }
    details = {
        "role": decision.role.role.value,
        "roleReason": decision.role.reason,
        "rolePattern": decision.role.matched_pattern,
        "hubSelection": decision.hub.selection.value,
        "hubReason": decision.hub.reason[:300],
        "provisioningState": decision.provisioning_state.value,
        "linked": decision.link is not None,
        "reregistration": request.is_reregistration,
        "fallback": fallback_reason is not None,
        "outage": fallback_reason[:500] if fallback_reason else None,
        "identitySources": identity.provenance(),
        "subjectSerialNumber": (
            identity.subject_serial_number.value if identity.subject_serial_number else None
        ),
        "thumbprint": identity.thumbprint,
        **_hubs(request),
        "currentHub": request.device_runtime_context.current_iot_hub_host_name,
        "policyVersion": decision.response.initial_twin.tags.policy_version,
    }
    entries = [
        AuditEntry(
            action="allocation.fallback" if fallback_reason else "allocation.decided",
            actor="dps-webhook",
            outcome="pendingReconciliation" if fallback_reason else "allocated",
            details=details,
            **common,
        )
    ]
    replacement = decision.replacement
    if replacement is not None and decision.link is not None:
        entries.append(
            AuditEntry(
                action="replacement.accepted",
                actor="dps-webhook",
                outcome="linked in place of " + replacement.old_device_id,
                details={
                    "oldDeviceId": replacement.old_device_id,
                    "newDeviceId": identity.device_id.value,
                    "reason": replacement.reason[:1024],
                    "deviceReason": replacement.device_reason,
                    "approvedBy": replacement.approved_by,
                },
                **common,
            )
        )
    return entries


def _refusal_entries(
    request: AllocationRequest, error: AllocationError, request_id: str
) -> list[AuditEntry]:
    context = request.device_runtime_context
    common = {
        "registration_id": context.registration_id,
        "device_id": request.enrollment.device_id or context.registration_id,
        "request_id": request_id or None,
    }
    entries = [
        AuditEntry(
            action="allocation.refused",
            actor="dps-webhook",
            outcome=error.code,
            details={
                "detail": error.detail[:1000],
                "field": error.field if isinstance(error, AttestationError) else None,
                "enrollment": _enrollment(request),
                **_hubs(request),
            },
            **common,
        )
    ]
    if isinstance(error, ReplacementRefused):
        try:
            claim = read_claim(context.payload)
        except AllocationError:
            claim = None
        entries.append(
            AuditEntry(
                action="replacement.refused",
                actor="dps-webhook",
                outcome=f"claim refused: {error.rule}",
                details={
                    "claimedOldDeviceId": claim.device_id if claim else None,
                    "deviceReason": claim.reason if claim else None,
                    "rule": error.rule,
                    "detail": error.detail[:1000],
                },
                **common,
            )
        )
    return entries


def _hubs(request: AllocationRequest) -> dict[str, Any]:
    hubs = list(request.linked_hubs)
    return {"linkedHubs": hubs[:MAX_LISTED_HUBS], "linkedHubCount": len(hubs)}


def _enrollment(request: AllocationRequest) -> str | None:
    return request.enrollment.enrollment_group_id or request.enrollment.registration_id
