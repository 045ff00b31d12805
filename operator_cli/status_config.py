"""Where `status` finds the app's health endpoint and the hubs: the environment, else the local
stack's .devstack/stack.json (written by `make run`). docs/configuration.md lists the settings.

The storage account, its queues and their encoding come as for every command (config.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from operator_cli.config import STACK_FILE
from operator_cli.dps_config import function_key
from operator_cli.errors import ConfigurationError
from operator_cli.hub_config import HUB_SETTINGS

HEALTH_URL_ENV = "HEALTH_URL"
HEALTH_KEY_ENV = "HEALTH_FUNCTION_KEY"
HEALTH_KEY_FILE_ENV = "HEALTH_FUNCTION_KEY_FILE"
HEALTH_PATH = "/api/health"
NOT_CONFIGURED = (
    f"not configured: set {HEALTH_URL_ENV} (https://<app>.azurewebsites.net{HEALTH_PATH}) and "
    f"{HEALTH_KEY_ENV} or {HEALTH_KEY_FILE_ENV}, or run the local stack (`make run`)"
)
HUBS_NOT_CONFIGURED = (
    f"not configured: set {' or '.join(HUB_SETTINGS)} as for the app, or run the local stack "
    "(`make run`)"
)


@dataclass(frozen=True)
class HealthEndpoint:
    url: str
    """Never carries the key: it is sent as a header, and the URL is shown."""
    function_key: str | None = field(repr=False)


def health_endpoint(environ: Mapping[str, str], cwd: Path) -> HealthEndpoint | None:
    """HEALTH_URL with its key, else the local stack's function host; None when neither is
    there."""
    url = environ.get(HEALTH_URL_ENV, "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{HEALTH_URL_ENV} must be an http(s) URL with a host")
        if parts.username or any(name == "code" for name, _ in parse_qsl(parts.query)):
            raise ConfigurationError(
                f"{HEALTH_URL_ENV} must not carry a credential (code=..., user:password@): give "
                f"the function key in {HEALTH_KEY_ENV} or {HEALTH_KEY_FILE_ENV}, so it is never "
                "shown"
            )
        return HealthEndpoint(url, function_key(environ, HEALTH_KEY_ENV, HEALTH_KEY_FILE_ENV))
    stack = _stack(cwd)
    host = stack.get("functionHost")
    if not isinstance(host, str) or not host:
        return None
    key = stack.get("functionKey")
    return HealthEndpoint(host.rstrip("/") + HEALTH_PATH, key if isinstance(key, str) else None)


def hub_settings(environ: Mapping[str, str], cwd: Path) -> Mapping[str, str] | None:
    """The hub settings as the app reads them: the environment's when it names a hub, else the
    local stack's emulators (their connection strings and CA); None when neither is there."""
    if any(environ.get(name, "").strip() for name in HUB_SETTINGS):
        return environ
    stack = _stack(cwd)
    hubs = stack.get("hubs")
    tls = stack.get("tls")
    if not isinstance(hubs, dict) or not hubs:
        return None
    strings = {
        str(name): hub["connectionString"]
        for name, hub in hubs.items()
        if isinstance(hub, dict) and isinstance(hub.get("connectionString"), str)
    }
    settings = {"IOT_HUB_CONNECTION_STRINGS": json.dumps(strings)}
    if isinstance(tls, dict) and isinstance(tls.get("caCert"), str):
        settings["IOT_HUB_CA_BUNDLE"] = tls["caCert"]
    return settings


def _stack(cwd: Path) -> dict[str, Any]:
    """The local stack's description, or {} when there is none to read."""
    try:
        description = json.loads((cwd / STACK_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return description if isinstance(description, dict) else {}
