"""Build webhook request bodies the way DPS builds them (docs/contracts.md, "Request body")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEMO_HUBS = ("hub-us-east.azure-devices.net", "hub-eu-west.azure-devices.net")


def enrollment_group_record(
    group_id: str = "devstack-x509",
    *,
    hubs: Sequence[str] = DEMO_HUBS,
    api_version: str = "2021-10-01",
    update_hub_assignment: bool = True,
    migrate_device_data: bool = True,
) -> dict[str, Any]:
    return {
        "enrollmentGroupId": group_id,
        "attestation": {"type": "x509"},
        "capabilities": {"iotEdge": False},
        "etag": '"00000000-0000-0000-0000-000000000000"',
        "provisioningStatus": "enabled",
        "reprovisionPolicy": {
            "updateHubAssignment": update_hub_assignment,
            "migrateDeviceData": migrate_device_data,
        },
        "allocationPolicy": "custom",
        "iotHubs": list(hubs),
        "customAllocationDefinition": {
            "webhookUrl": "https://example.invalid/api/allocate?****",
            "apiVersion": api_version,
        },
        "createdDateTimeUtc": "2026-01-01T00:00:00Z",
        "lastUpdatedDateTimeUtc": "2026-01-01T00:00:00Z",
    }


def allocation_request(
    registration_id: str,
    *,
    x509: dict[str, Any] | None = None,
    linked_hubs: Sequence[str] = DEMO_HUBS,
    payload: dict[str, Any] | None = None,
    current_hub: str | None = None,
    current_device_id: str | None = None,
    enrollment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A group-enrollment request; pass x509={"clientCertificate": ...} for a certificate."""
    context: dict[str, Any] = {"registrationId": registration_id, "x509": x509 or {}}
    if current_hub is not None:
        context["currentIotHubHostName"] = current_hub
        context["currentDeviceId"] = current_device_id or registration_id
    if payload is not None:
        context["payload"] = payload
    return {
        "enrollmentGroup": enrollment or enrollment_group_record(hubs=linked_hubs),
        "deviceRuntimeContext": context,
        "linkedHubs": list(linked_hubs),
    }
