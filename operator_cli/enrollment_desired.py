"""A group file plus the deployment's parts: the body to PUT to DPS (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from operator_cli.enrollment_files import GroupTemplate

KEY_PARAMETER = "code"


def webhook_url(base: str, function_key: str | None) -> str:
    """The function's URL with its key as the `code` query parameter (how Functions takes it)."""
    if not function_key:
        return base
    parts = urlsplit(base)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(
        (*parts[:3], f"{query}{KEY_PARAMETER}={quote(function_key, safe='')}", parts.fragment)
    )


def masked_url(url: str) -> str:
    """A webhook URL fit to show: its query (the key) replaced by ****, as DPS shows it."""
    parts = urlsplit(url)
    return urlunsplit((*parts[:3], "****" if parts.query else "", ""))


def desired_record(
    template: GroupTemplate, *, webhook: str, certificates: Mapping[str, str]
) -> dict[str, Any]:
    """The template with its webhook URL and signing certificates (slot -> PEM) filled in."""
    record: dict[str, Any] = json.loads(json.dumps(template.record))
    record["customAllocationDefinition"]["webhookUrl"] = webhook
    signing = record["attestation"]["x509"].get("signingCertificates")
    if signing is not None:
        for slot in template.certificates:
            signing[slot] = {"certificate": certificates[slot]}
    return record
