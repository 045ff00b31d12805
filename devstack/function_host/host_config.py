"""Read host.json the way the Functions host does, keeping only what the dev host acts on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.function_host.errors import StartupError

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_MAX_EVENT_BATCH_SIZE = 100


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the dev host honours."""

    route_prefix: str
    raw: dict[str, Any]
    max_event_batch_size: int = DEFAULT_MAX_EVENT_BATCH_SIZE


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
    return HostConfig(
        route_prefix=_route_prefix(path, raw),
        raw=raw,
        max_event_batch_size=_max_event_batch_size(path, raw),
    )


def _section(raw: Any, name: str) -> Any:
    """A host.json section by name; the host binds configuration case-insensitively."""
    if not isinstance(raw, dict):
        return None
    for key, value in raw.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def _route_prefix(path: Path, raw: dict[str, Any]) -> str:
    http = raw.get("extensions", {}).get("http", {})
    if not isinstance(http, dict) or "routePrefix" not in http:
        return DEFAULT_ROUTE_PREFIX
    prefix = http["routePrefix"]
    if not isinstance(prefix, str):
        raise StartupError(f"{path}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")


def _max_event_batch_size(path: Path, raw: dict[str, Any]) -> int:
    """extensions.eventHubs.maxEventBatchSize (Event Hubs extension 5.x+), default 100."""
    value = _section(_section(_section(raw, "extensions"), "eventHubs"), "maxEventBatchSize")
    if value is None:
        return DEFAULT_MAX_EVENT_BATCH_SIZE
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # .NET configuration binding converts numeric strings
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StartupError(
            f"{path}: extensions.eventHubs.maxEventBatchSize must be a positive integer, "
            f"found {value!r}"
        )
    return value
