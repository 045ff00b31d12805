"""The audit entries the sync flows record: a twin written, an asset written, and the reported
values sync would not copy. Pure; no I/O.

Refusals name the field and the rule, never the value: it is device-written and untrusted.
"""

from __future__ import annotations

from asset_client import Asset
from audit import AuditEntry
from observability import DeviceLog
from sync.asset_to_twin import TwinPlan
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


def twin_written_entry(
    asset: Asset, device_id: str, hub: str, plan: TwinPlan, log: DeviceLog
) -> AuditEntry:
    return AuditEntry(
        action="sync.twinWritten",
        actor="asset-sync",
        outcome="written",
        registration_id=device_id,
        device_id=device_id,
        asset_id=asset.asset_id,
        hub=hub,
        request_id=log.fields.get("requestId"),
        details={
            "assetVersion": asset.version,
            "changed": list(plan.changed),
            "reprovision": plan.reprovision.model_dump(by_alias=True) if plan.reprovision else None,
        },
    )


def asset_written_entry(
    change: TwinChange, asset_id: str, plan: AssetPlan, log: DeviceLog
) -> AuditEntry:
    return AuditEntry(
        action="sync.assetWritten",
        actor="twin-sync",
        outcome="written",
        registration_id=change.device_id,
        device_id=change.device_id,
        asset_id=asset_id,
        hub=change.hub_name,
        request_id=log.fields.get("requestId"),
        details={"copied": list(plan.copied), "twinVersion": change.version},
    )
