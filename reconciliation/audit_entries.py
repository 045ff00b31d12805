"""The audit entry of a reconciled message: which action, by outcome and kind. Pure; no I/O."""

from __future__ import annotations

from audit import AuditAction, AuditEntry
from messages import ReconciliationMessage

_AUDIT_ACTIONS: dict[tuple[str, str], AuditAction] = {
    ("allocation", "refused"): "reconciliation.refused",
    ("allocation", "dead-lettered"): "reconciliation.refused",
    ("twinChange", "dead-lettered"): "reconciliation.refused",
    ("allocation", "reconciled late; re-enabled"): "device.reenabled",
    ("deregistration", "disabled"): "device.deregistered",
    ("deregistration", "deleted"): "device.deregistered",
    ("deregistration", "already gone"): "device.deregistered",
}
_EVENT_DETAILS = ("oldDeviceId", "newDeviceId", "action", "approvedBy", "reason", "deviceReason")


def reconciled_entry(
    message: ReconciliationMessage, result: str, *, dequeue_count: int, request_id: str
) -> AuditEntry:
    event = message.event or {}
    return AuditEntry(
        action=_AUDIT_ACTIONS.get((message.kind, result), "reconciliation.completed"),
        actor="reconciler",
        outcome=result,
        registration_id=event.get("registrationId"),
        device_id=message.device_id,
        asset_id=message.asset_id or event.get("assetId"),
        hub=message.hub,
        request_id=request_id,
        details={
            "kind": message.kind,
            "reason": message.reason,
            "dequeueCount": dequeue_count,
            "event": {k: v for k, v in event.items() if k in _EVENT_DETAILS},
        },
    )
