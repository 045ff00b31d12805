"""Twins and device identities as the app sees them, free of SDK types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Twin:
    """A device twin with its etag. `desired`/`reported` exclude `$metadata` and `$version`."""

    hub: str
    device_id: str
    etag: str
    version: int | None
    status: str | None
    tags: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)
    desired_version: int | None = None
    reported: dict[str, Any] = field(default_factory=dict)
    reported_version: int | None = None


@dataclass(frozen=True)
class TwinPatch:
    """A JSON merge patch on tags and desired properties (None deletes a key)."""

    tags: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None


@dataclass(frozen=True)
class DeviceRecord:
    hub: str
    device_id: str
    etag: str
    status: str
    authentication_type: str | None
    generation_id: str | None
