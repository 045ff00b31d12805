"""Enrollment groups as files in DPS's own JSON shape: `<data-dir>/enrollment-groups/*.json`.

A file can be pushed to a real DPS unchanged (service API, enrollmentGroups PUT). Only what the
emulator implements is accepted: X.509 signing certificates and the custom allocation policy.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.certificates import TestCertificateAuthority
from devstack.dps_emulator.certificate_info import certificate_info
from devstack.dps_emulator.errors import EnrollmentGroupError

GROUPS_DIRECTORY = "enrollment-groups"
WEBHOOK_API_VERSIONS = ("2019-03-31", "2021-10-01")
_GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-._:]{0,127}$")


@dataclass(frozen=True)
class EnrollmentGroup:
    """One enrollment group, validated; `record` is the file's JSON as written."""

    group_id: str
    path: Path
    record: dict[str, Any]
    signing_certificates: tuple[x509.Certificate, ...]
    enabled: bool
    update_hub_assignment: bool
    migrate_device_data: bool
    webhook_url: str
    webhook_api_version: str
    iot_hubs: tuple[str, ...]

    @property
    def ca_pem(self) -> str:
        return "".join(
            cert.public_bytes(serialization.Encoding.PEM).decode()
            for cert in self.signing_certificates
        )

    def signed(self, leaf: x509.Certificate) -> x509.Certificate | None:
        """The group's signing certificate that issued `leaf`, if any."""
        for signer in self.signing_certificates:
            if leaf.issuer != signer.subject:
                continue
            try:
                leaf.verify_directly_issued_by(signer)
            except (ValueError, TypeError):
                continue
            return signer
        return None

    def webhook_record(self) -> dict[str, Any]:
        """The record as DPS embeds it in webhook requests: URL query masked, no key material."""
        record: dict[str, Any] = json.loads(json.dumps(self.record))
        record["customAllocationDefinition"]["webhookUrl"] = masked_url(self.webhook_url)
        signing = record["attestation"]["x509"]["signingCertificates"]
        for slot, cert in zip(("primary", "secondary"), self.signing_certificates, strict=False):
            signing[slot] = {"info": certificate_info(cert)}
        record.setdefault("provisioningStatus", "enabled")
        record.setdefault(
            "reprovisionPolicy",
            {
                "updateHubAssignment": self.update_hub_assignment,
                "migrateDeviceData": self.migrate_device_data,
            },
        )
        return record


@dataclass(frozen=True)
class EnrollmentGroupFiles:
    group_id: str
    record_path: Path
    ca_cert: Path
    ca_key: Path


def masked_url(url: str) -> str:
    """DPS shows webhook URLs with their query (the function key) as `?****`."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "****", ""))


def groups_directory(data_dir: Path) -> Path:
    return data_dir / GROUPS_DIRECTORY


def load_enrollment_groups(directory: Path) -> list[EnrollmentGroup]:
    """Read every `*.json` in `directory`; raise EnrollmentGroupError naming file and field."""
    if not directory.is_dir():
        return []
    groups = [load_enrollment_group(path) for path in sorted(directory.glob("*.json"))]
    seen: dict[str, Path] = {}
    signers: dict[bytes, Path] = {}
    for group in groups:
        key = group.group_id.casefold()
        if key in seen:
            raise EnrollmentGroupError(
                group.path, "enrollmentGroupId", f"{group.group_id!r} is also used by {seen[key]}"
            )
        seen[key] = group.path
        for cert in group.signing_certificates:
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in signers and signers[der] != group.path:
                raise EnrollmentGroupError(
                    group.path,
                    "attestation.x509.signingCertificates",
                    f"the same certificate signs the group in {signers[der]}; a device must "
                    "belong to exactly one group",
                )
            signers[der] = group.path
    return groups


def load_enrollment_group(path: Path) -> EnrollmentGroup:
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise EnrollmentGroupError(path, "(file)", f"cannot read: {exc}") from exc
    except ValueError as exc:
        raise EnrollmentGroupError(path, "(file)", f"is not JSON: {exc}") from exc
    return parse_enrollment_group(path, record)


def parse_enrollment_group(path: Path, record: Any) -> EnrollmentGroup:
    def fail(field: str, problem: str) -> EnrollmentGroupError:
        return EnrollmentGroupError(path, field, problem)

    if not isinstance(record, dict):
        raise fail("(file)", "must hold one JSON object")
    group_id = record.get("enrollmentGroupId")
    if not isinstance(group_id, str) or not _GROUP_ID.fullmatch(group_id):
        raise fail(
            "enrollmentGroupId",
            "required: 1-128 chars, alphanumerics and - . _ :, starting alphanumeric",
        )
    attestation = _object(record, "attestation", fail)
    if attestation.get("type") != "x509":
        raise fail("attestation.type", 'must be "x509" (the emulator supports X.509 groups only)')
    x509_section = _object(attestation, "x509", fail, "attestation.")
    if "caReferences" in x509_section and "signingCertificates" not in x509_section:
        raise fail(
            "attestation.x509.caReferences",
            "not supported: embed the CA as signingCertificates.primary.certificate",
        )
    signing = _object(x509_section, "signingCertificates", fail, "attestation.x509.")
    primary = _certificate(signing, "primary", fail, required=True)
    assert primary is not None
    certificates = [primary]
    secondary = _certificate(signing, "secondary", fail, required=False)
    if secondary is not None:
        certificates.append(secondary)

    status = record.get("provisioningStatus", "enabled")
    if status not in ("enabled", "disabled"):
        raise fail("provisioningStatus", 'must be "enabled" or "disabled"')
    policy = record.get("reprovisionPolicy", {})
    if not isinstance(policy, dict):
        raise fail("reprovisionPolicy", "must be an object")
    update = policy.get("updateHubAssignment", True)
    migrate = policy.get("migrateDeviceData", True)
    for name, value in (("updateHubAssignment", update), ("migrateDeviceData", migrate)):
        if not isinstance(value, bool):
            raise fail(f"reprovisionPolicy.{name}", "must be true or false")

    if record.get("allocationPolicy") != "custom":
        raise fail("allocationPolicy", 'must be "custom" (the emulator implements custom only)')
    definition = _object(record, "customAllocationDefinition", fail)
    url = definition.get("webhookUrl")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise fail("customAllocationDefinition.webhookUrl", "must be an http(s) URL")
    if not urlsplit(url).hostname:
        raise fail("customAllocationDefinition.webhookUrl", "has no host")
    api_version = definition.get("apiVersion", "2021-10-01")
    if api_version not in WEBHOOK_API_VERSIONS:
        raise fail(
            "customAllocationDefinition.apiVersion", f"must be one of {WEBHOOK_API_VERSIONS}"
        )
    hubs = record.get("iotHubs", [])
    if not isinstance(hubs, list) or not all(isinstance(h, str) and h for h in hubs):
        raise fail("iotHubs", "must be a list of IoT hub host names")
    capabilities = record.get("capabilities", {})
    if not isinstance(capabilities, dict) or not isinstance(
        capabilities.get("iotEdge", False), bool
    ):
        raise fail("capabilities.iotEdge", "must be true or false")
    return EnrollmentGroup(
        group_id=group_id,
        path=path,
        record=record,
        signing_certificates=tuple(certificates),
        enabled=status == "enabled",
        update_hub_assignment=update,
        migrate_device_data=migrate,
        webhook_url=url,
        webhook_api_version=api_version,
        iot_hubs=tuple(hubs),
    )


def _object(parent: dict[str, Any], name: str, fail: Any, prefix: str = "") -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise fail(
            f"{prefix}{name}",
            "required object is missing" if value is None else "must be an object",
        )
    return value


def _certificate(
    signing: dict[str, Any], slot: str, fail: Any, *, required: bool
) -> x509.Certificate | None:
    field = f"attestation.x509.signingCertificates.{slot}.certificate"
    entry = signing.get(slot)
    if entry is None and not required:
        return None
    pem = entry.get("certificate") if isinstance(entry, dict) else None
    if not isinstance(pem, str):
        raise fail(field, "required: the signing CA certificate as PEM")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise fail(field, f"is not a PEM certificate: {exc}") from exc
    constraints = _basic_constraints(certificate)
    if constraints is not None and not constraints.ca:
        raise fail(field, "is not a CA certificate (basicConstraints CA:FALSE)")
    return certificate


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def new_group_record(
    group_id: str,
    *,
    ca_pem: str,
    webhook_url: str,
    hubs: Sequence[str],
    update_hub_assignment: bool = True,
    migrate_device_data: bool = True,
    enabled: bool = True,
    api_version: str = "2021-10-01",
) -> dict[str, Any]:
    """A group record in DPS's enrollment-group JSON shape."""
    now = timestamp()
    return {
        "enrollmentGroupId": group_id,
        "attestation": {
            "type": "x509",
            "x509": {"signingCertificates": {"primary": {"certificate": ca_pem}}},
        },
        "capabilities": {"iotEdge": False},
        "provisioningStatus": "enabled" if enabled else "disabled",
        "reprovisionPolicy": {
            "updateHubAssignment": update_hub_assignment,
            "migrateDeviceData": migrate_device_data,
        },
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": webhook_url, "apiVersion": api_version},
        "iotHubs": list(hubs),
        "etag": new_etag(),
        "createdDateTimeUtc": now,
        "lastUpdatedDateTimeUtc": now,
    }


def ensure_default_enrollment_group(
    data_dir: Path,
    *,
    webhook_url: str,
    hubs: Sequence[str],
    group_id: str = "devstack-x509",
    update_hub_assignment: bool = True,
    migrate_device_data: bool = True,
) -> EnrollmentGroupFiles:
    """Create the group's CA and record on first use; later refresh only webhookUrl and hubs."""
    directory = groups_directory(data_dir)
    files = EnrollmentGroupFiles(
        group_id=group_id,
        record_path=directory / f"{group_id}.json",
        ca_cert=directory / group_id / "ca.pem",
        ca_key=directory / group_id / "ca.key.pem",
    )
    if files.ca_cert.exists() and files.ca_key.exists():
        authority = TestCertificateAuthority.from_files(files.ca_cert, files.ca_key)
    else:
        authority = TestCertificateAuthority(name=f"Devstack {group_id} CA")
        authority.issued.write(files.ca_cert.parent, "ca")
    ca_pem = authority.issued.pem
    if files.record_path.exists():
        record = load_enrollment_group(files.record_path).record
        before = json.dumps(record, sort_keys=True)
        record["customAllocationDefinition"]["webhookUrl"] = webhook_url
        record["iotHubs"] = list(hubs)
        # A CA regenerated because its files were deleted must replace the stale one.
        record["attestation"]["x509"]["signingCertificates"]["primary"]["certificate"] = ca_pem
        if json.dumps(record, sort_keys=True) != before:
            record["etag"] = new_etag()
            record["lastUpdatedDateTimeUtc"] = timestamp()
            write_group_record(files.record_path, record)
    else:
        record = new_group_record(
            group_id,
            ca_pem=ca_pem,
            webhook_url=webhook_url,
            hubs=hubs,
            update_hub_assignment=update_hub_assignment,
            migrate_device_data=migrate_device_data,
        )
        write_group_record(files.record_path, record)
    return files


def write_group_record(path: Path, record: dict[str, Any]) -> None:
    """Write atomically: a running emulator never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def timestamp() -> str:
    """Now, as DPS writes its *DateTimeUtc fields."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_etag() -> str:
    """A fresh opaque, quoted etag."""
    return f'"{os.urandom(8).hex()}"'
