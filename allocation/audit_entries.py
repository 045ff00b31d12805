"""What the audit trail records about an allocation: the decision and the evidence for it."""

from __future__ import annotations

from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision
from allocation.errors import AllocationError, AttestationError, ReplacementRefused
from allocation.replacement import read_claim
from audit import AuditEntry


def outcome_entries(
    request: AllocationRequest,
    *,
    decision: AllocationDecision,
    fallback_reason: str | None,
    request_id: str,
) -> list[AuditEntry]:
    identity = decision.identity
    asset_id = decision.asset.asset_id if decision.asset else None
    common = {
        "registration_id": identity.registration_id,
        "device_id": identity.device_id.value,
        "asset_id": asset_id,
        "hub": decision.hub.hub,
        "request_id": request_id or None,
    }
    details = {
        "role": decision.role.role.value,
        "roleReason": decision.role.reason,
        "rolePattern": decision.role.matched_pattern,
        "hubSelection": decision.hub.selection.value,
        "hubReason": decision.hub.reason,
        "provisioningState": decision.provisioning_state.value,
        "linked": decision.link is not None,
        "reregistration": request.is_reregistration,
        "fallback": fallback_reason is not None,
        "outage": fallback_reason,
        "identitySources": identity.provenance(),
        "subjectSerialNumber": (
            identity.subject_serial_number.value if identity.subject_serial_number else None
        ),
        "thumbprint": identity.thumbprint,
        "linkedHubs": list(request.linked_hubs),
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
    if decision.replacement is not None and decision.link is not None:
        entries.append(
            AuditEntry(
                action="replacement.accepted",
                actor="dps-webhook",
                outcome="linked in place of " + decision.replacement.old_device_id,
                details={
                    "oldDeviceId": decision.replacement.old_device_id,
                    "newDeviceId": identity.device_id.value,
                    "reason": decision.replacement.reason,
                    "approvedBy": decision.replacement.approved_by,
                },
                **common,
            )
        )
    return entries


def refusal_entries(
    request: AllocationRequest, error: AllocationError, request_id: str
) -> list[AuditEntry]:
    context = request.device_runtime_context
    device_id = request.enrollment.device_id or context.registration_id
    common = {
        "registration_id": context.registration_id,
        "device_id": device_id,
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
                "linkedHubs": list(request.linked_hubs),
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
                outcome="spoofing attempt refused",
                details={
                    "claimedOldDeviceId": claim.device_id if claim else None,
                    "claimedReason": claim.reason if claim else None,
                    "detail": error.detail[:1000],
                },
                **common,
            )
        )
    return entries
