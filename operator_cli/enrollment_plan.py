"""What apply would change: the repository's groups against what DPS holds (pure).

Groups are compared field by field on what an operator decides, with DPS's defaults filled in
and its server-set fields (etag, timestamps, certificate info) left out; certificates compare
by their SHA-256 thumbprint, since DPS answers with a certificate's info, not the certificate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from operator_cli.enrollment_desired import masked_url

Action = Literal["create", "update", "unchanged"]
WEBHOOK_FIELD = "customAllocationDefinition.webhookUrl"


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PlannedGroup:
    group_id: str
    action: Action
    desired: dict[str, Any]
    etag: str | None
    """DPS's etag of the group as read: the If-Match of the update."""
    changes: tuple[Change, ...]


def plan(
    desired: Sequence[dict[str, Any]], actual: Mapping[str, dict[str, Any] | None]
) -> list[PlannedGroup]:
    """One entry per desired group; `actual` maps each group id to DPS's record, or None."""
    entries = []
    for record in desired:
        group_id = record["enrollmentGroupId"]
        current = actual.get(group_id)
        if current is None:
            changes = _differences({}, comparable(record), creating=True)
            entries.append(PlannedGroup(group_id, "create", record, None, changes))
            continue
        changes = _differences(comparable(current), comparable(record), creating=False)
        etag = current.get("etag") if isinstance(current.get("etag"), str) else None
        action: Action = "update" if changes else "unchanged"
        entries.append(PlannedGroup(group_id, action, record, etag, changes))
    return entries


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an operator decides, DPS's defaults filled in, flattened to dotted names."""
    attestation = _mapping(record.get("attestation"))
    x509_section = _mapping(attestation.get("x509"))
    signing = _mapping(x509_section.get("signingCertificates"))
    references = _mapping(x509_section.get("caReferences"))
    policy = _mapping(record.get("reprovisionPolicy"))
    definition = _mapping(record.get("customAllocationDefinition"))
    hubs = record.get("iotHubs")
    fields = {
        "attestation.type": attestation.get("type"),
        "capabilities.iotEdge": _mapping(record.get("capabilities")).get("iotEdge", False),
        "provisioningStatus": record.get("provisioningStatus", "enabled"),
        "reprovisionPolicy.updateHubAssignment": policy.get("updateHubAssignment", True),
        "reprovisionPolicy.migrateDeviceData": policy.get("migrateDeviceData", True),
        "allocationPolicy": record.get("allocationPolicy"),
        WEBHOOK_FIELD: definition.get("webhookUrl"),
        "customAllocationDefinition.apiVersion": definition.get("apiVersion"),
        "iotHubs": sorted(hubs) if isinstance(hubs, list) else [],
        "initialTwin": record.get("initialTwin"),
        "iotHubHostName": record.get("iotHubHostName"),
    }
    for slot in ("primary", "secondary"):
        fields[f"attestation.x509.signingCertificates.{slot}"] = _thumbprint(signing.get(slot))
        fields[f"attestation.x509.caReferences.{slot}"] = references.get(slot)
    return fields


def shown(change_field: str, value: Any) -> Any:
    """A value fit to print: the webhook URL loses its key."""
    if change_field == WEBHOOK_FIELD and isinstance(value, str):
        return masked_url(value)
    return value


def _differences(
    before: Mapping[str, Any], after: Mapping[str, Any], *, creating: bool
) -> tuple[Change, ...]:
    changes = []
    for name, value in after.items():
        old = before.get(name)
        if (creating and value in (None, [], False)) or old == value:
            continue
        if name == WEBHOOK_FIELD and old is not None and _masked_equal(old, value):
            continue
        changes.append(Change(name, old, value))
    return tuple(changes)


def _masked_equal(read: Any, wanted: Any) -> bool:
    """DPS may answer with the URL's query masked: then only the rest can be compared."""
    return (
        isinstance(read, str)
        and isinstance(wanted, str)
        and read.endswith("?****")
        and read == masked_url(wanted)
    )


def _thumbprint(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    pem = entry.get("certificate")
    if isinstance(pem, str) and pem.strip():
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            return "(not a PEM certificate)"
        return "sha256:" + certificate.fingerprint(hashes.SHA256()).hex().upper()
    info = _mapping(entry.get("info"))
    thumbprint = info.get("sha256Thumbprint")
    return f"sha256:{str(thumbprint).upper()}" if thumbprint else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
