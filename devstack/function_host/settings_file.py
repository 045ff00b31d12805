"""Read local.settings.json and publish its Values as environment variables, as Core Tools does."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.function_host.errors import StartupError


@dataclass(frozen=True)
class LocalSettings:
    """App settings (`Values`) and the optional `Host.LocalHttpPort`."""

    values: dict[str, str] = field(default_factory=dict)
    local_http_port: int | None = None


def load_local_settings(path: Path) -> LocalSettings:
    """Parse the file; a missing file means no settings, an encrypted one is refused."""
    if not path.exists():
        return LocalSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise StartupError(f"{path} must hold a JSON object")
    if raw.get("IsEncrypted") is True:
        raise StartupError(
            f"{path} has IsEncrypted: true; the dev host cannot decrypt it. "
            "Run `func settings decrypt` or set IsEncrypted to false with plain values."
        )
    return LocalSettings(
        values=_values(path, raw.get("Values") or {}),
        local_http_port=_local_http_port(path, raw.get("Host") or {}),
    )


def apply_values(values: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Set each value unless the environment already has it, so a parent process can override."""
    applied = []
    for name, value in values.items():
        if name not in environ:
            environ[name] = value
            applied.append(name)
    return applied


def _values(path: Path, values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        raise StartupError(f"{path}: Values must be a JSON object of name -> string")
    result: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            result[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            result[name] = str(value)
        elif value is None:
            result[name] = ""
        else:
            raise StartupError(
                f"{path}: Values.{name} must be a string, not {type(value).__name__}"
            )
    return result


def _local_http_port(path: Path, host: Any) -> int | None:
    if not isinstance(host, dict) or "LocalHttpPort" not in host:
        return None
    port = host["LocalHttpPort"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise StartupError(f"{path}: Host.LocalHttpPort must be a port number")
    return port
