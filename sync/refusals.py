"""The audit entries for reported values sync would not copy. Pure; no I/O.

Entries name the field and the rule, never the value: it is device-written and untrusted.
"""

from __future__ import annotations

from audit import AuditEntry
from sync.events import TwinChange
from sync.twin_to_asset import AssetPlan

ROLE_REFUSED = "reported field refused"
INVALID_VALUE = "invalid reported value"


def refusal_entries(
    change: TwinChange, asset_id: str, plan: AssetPlan, role: str, request_id: str | None
) -> list[AuditEntry]:
    def entry(outcome: str, details: dict[str, object]) -> AuditEntry:
        return AuditEntry(
            action="sync.refused",
            actor="twin-sync",
            outcome=outcome,
            registration_id=change.device_id,
            device_id=change.device_id,
            asset_id=asset_id,
            hub=change.hub_name,
            request_id=request_id,
            details=details,
        )

    return [
        *(
            entry(ROLE_REFUSED, {"field": name, "requires": action, "role": role})
            for name, action in plan.refused
        ),
        *(
            entry(
                INVALID_VALUE,
                {"field": item.field, "rule": item.rule, "violation": item.violation},
            )
            for item in plan.invalid
        ),
    ]
