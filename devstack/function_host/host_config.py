"""Read host.json the way the Functions host does, keeping only what the dev host acts on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.function_host.errors import StartupError

DEFAULT_ROUTE_PREFIX = "api"


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the dev host honours."""

    route_prefix: str
    raw: dict[str, Any]


def load_host_config(script_root: Path) -> HostConfig:
    """Parse `<script_root>/host.json`; like Core Tools, a missing or non-2.0 file is fatal."""
    path = script_root / "host.json"
    if not path.is_file():
        raise StartupError(f"{path} not found: the script root must contain host.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise StartupError(f"{path} must hold a JSON object")
    version = raw.get("version")
    if version != "2.0":
        raise StartupError(f'{path}: "version" must be "2.0" (found {version!r})')
    return HostConfig(route_prefix=_route_prefix(path, raw), raw=raw)


def _route_prefix(path: Path, raw: dict[str, Any]) -> str:
    http = raw.get("extensions", {}).get("http", {})
    if not isinstance(http, dict) or "routePrefix" not in http:
        return DEFAULT_ROUTE_PREFIX
    prefix = http["routePrefix"]
    if not isinstance(prefix, str):
        raise StartupError(f"{path}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")
