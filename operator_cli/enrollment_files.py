"""The enrollment groups kept in the repository: `enrollment/groups/<id>.json`, DPS's own JSON.

Two things a file cannot hold, because they belong to a deployment, are filled in at apply
time: the webhook URL with its function key (the file leaves `webhookUrl` out), and the CA
certificate, which the file names instead of embedding it:

- `"certificate": "ca:NAME"`: the public CA certificate `NAME.pem` in the CA directory (an
  operator's CA, committed or provided by the deployment);
- `"certificate": "local-ca:NAME"`: a CA this tool keeps with its key in the local CA directory
  and creates on first use (the smoke test's CA, the local stack's).

A PEM written in place is used as it is; `caReferences` (CAs verified in DPS) pass through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from operator_cli.errors import ConfigurationError

GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-._:]{0,127}$")
CA_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SLOTS = ("primary", "secondary")
_SERVER_FIELDS = ("etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc")
_KNOWN = frozenset(
    {
        "enrollmentGroupId",
        "attestation",
        "capabilities",
        "initialTwin",
        "iotHubHostName",
        "provisioningStatus",
        "reprovisionPolicy",
        "allocationPolicy",
        "iotHubs",
        "customAllocationDefinition",
    }
)


class GroupFileError(ConfigurationError):
    """A group file is unreadable or invalid; the message names the file and the field."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        super().__init__(f"enrollment group file {path}: {field}: {problem}")
        self.path = path
        self.field = field


@dataclass(frozen=True)
class CertificateRef:
    """Where a signing certificate comes from: a CA file by name, or a PEM in the file."""

    kind: Literal["ca", "local-ca", "pem"]
    value: str


@dataclass(frozen=True)
class GroupTemplate:
    """One validated group file: its record without the deployment's parts."""

    group_id: str
    path: Path
    record: dict[str, Any]
    certificates: dict[str, CertificateRef]
    """Signing certificate slot (primary, secondary) -> where its PEM comes from."""


def load_templates(directories: list[Path]) -> list[GroupTemplate]:
    """Every `*.json` of the directories, sorted by id; ids must be unique across them."""
    templates: list[GroupTemplate] = []
    seen: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            raise ConfigurationError(f"enrollment groups directory {directory} does not exist")
        for path in sorted(directory.glob("*.json")):
            template = load_template(path)
            key = template.group_id.casefold()
            if key in seen:
                raise GroupFileError(
                    path, "enrollmentGroupId", f"{template.group_id!r} is also in {seen[key]}"
                )
            seen[key] = path
            templates.append(template)
    return sorted(templates, key=lambda t: t.group_id.casefold())


def load_template(path: Path) -> GroupTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GroupFileError(path, "(file)", f"cannot read: {type(exc).__name__}") from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise GroupFileError(path, "(file)", f"is not JSON: {exc}") from None
    return parse_template(path, record)


def parse_template(path: Path, record: Any) -> GroupTemplate:
    """Validate a group file's JSON; GroupFileError names the first wrong field."""

    def fail(field: str, problem: str) -> GroupFileError:
        return GroupFileError(path, field, problem)

    if not isinstance(record, dict):
        raise fail("(file)", "must hold one JSON object")
    for name in record:
        if name in _SERVER_FIELDS:
            raise fail(name, "is set by DPS; leave it out of the file")
        if name not in _KNOWN:
            raise fail(name, "is not an enrollment group field")
    group_id = record.get("enrollmentGroupId")
    if not isinstance(group_id, str) or not GROUP_ID.fullmatch(group_id):
        raise fail(
            "enrollmentGroupId",
            "required: 1-128 characters, alphanumerics and - . _ :, starting alphanumeric",
        )
    if path.stem != group_id:
        raise fail("enrollmentGroupId", f"{group_id!r} must match the file name ({path.name})")
    attestation = _object(record, "attestation", fail)
    if attestation.get("type") != "x509":
        raise fail("attestation.type", 'must be "x509"')
    x509_section = _object(attestation, "x509", fail, "attestation.")
    certificates = _signing_certificates(x509_section, fail)
    references = x509_section.get("caReferences")
    if references is not None and not (
        isinstance(references, dict)
        and isinstance(references.get("primary"), str)
        and all(isinstance(v, str) for v in references.values())
    ):
        raise fail("attestation.x509.caReferences", "must name at least a primary CA")
    if not certificates and references is None:
        raise fail(
            "attestation.x509",
            "needs signingCertificates.primary.certificate or caReferences.primary",
        )
    if record.get("allocationPolicy") != "custom":
        raise fail("allocationPolicy", 'must be "custom": the allocation webhook decides')
    definition = _object(record, "customAllocationDefinition", fail)
    for name in definition:
        if name == "webhookUrl":
            raise fail(
                "customAllocationDefinition.webhookUrl",
                "is filled in at apply time (ALLOCATION_WEBHOOK_URL and the function key); "
                "leave it out of the file",
            )
        if name != "apiVersion":
            raise fail(f"customAllocationDefinition.{name}", "is not a field of it")
    if not isinstance(definition.get("apiVersion"), str):
        raise fail("customAllocationDefinition.apiVersion", 'required, e.g. "2021-10-01"')
    status = record.get("provisioningStatus", "enabled")
    if status not in ("enabled", "disabled"):
        raise fail("provisioningStatus", 'must be "enabled" or "disabled"')
    policy = record.get("reprovisionPolicy", {})
    if not isinstance(policy, dict):
        raise fail("reprovisionPolicy", "must be an object")
    for name, value in policy.items():
        if name not in ("updateHubAssignment", "migrateDeviceData"):
            raise fail(f"reprovisionPolicy.{name}", "is not a field of it")
        if not isinstance(value, bool):
            raise fail(f"reprovisionPolicy.{name}", "must be true or false")
    capabilities = record.get("capabilities", {})
    if not isinstance(capabilities, dict) or not isinstance(
        capabilities.get("iotEdge", False), bool
    ):
        raise fail("capabilities.iotEdge", "must be true or false")
    hubs = record.get("iotHubs", [])
    if not isinstance(hubs, list) or not all(isinstance(h, str) and h for h in hubs):
        raise fail("iotHubs", "must be a list of IoT hub host names")
    twin = record.get("initialTwin")
    if twin is not None and not isinstance(twin, dict):
        raise fail("initialTwin", "must be an object")
    return GroupTemplate(group_id, path, record, certificates)


def _signing_certificates(x509_section: dict[str, Any], fail: Any) -> dict[str, CertificateRef]:
    signing = x509_section.get("signingCertificates")
    if signing is None:
        return {}
    prefix = "attestation.x509.signingCertificates"
    if not isinstance(signing, dict):
        raise fail(prefix, "must be an object")
    refs: dict[str, CertificateRef] = {}
    for slot, entry in signing.items():
        if slot not in SLOTS:
            raise fail(f"{prefix}.{slot}", "only primary and secondary exist")
        field = f"{prefix}.{slot}.certificate"
        value = entry.get("certificate") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise fail(field, 'required: "ca:NAME", "local-ca:NAME" or a PEM certificate')
        refs[slot] = _reference(value.strip(), field, fail)
    if "primary" not in refs:
        raise fail(f"{prefix}.primary", "required when signingCertificates is given")
    return refs


def _reference(value: str, field: str, fail: Any) -> CertificateRef:
    if value.startswith("-----BEGIN CERTIFICATE-----"):
        return CertificateRef("pem", value)
    kind, sep, name = value.partition(":")
    if not sep or kind not in ("ca", "local-ca"):
        raise fail(field, 'must be "ca:NAME", "local-ca:NAME" or a PEM certificate')
    if not CA_NAME.fullmatch(name):
        raise fail(field, f"{name!r} is not a CA name: lowercase letters, digits and hyphens")
    return CertificateRef("ca" if kind == "ca" else "local-ca", name)


def _object(parent: dict[str, Any], name: str, fail: Any, prefix: str = "") -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise fail(
            f"{prefix}{name}",
            "required object is missing" if value is None else "must be an object",
        )
    return value
