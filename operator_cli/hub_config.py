"""The IoT hubs as the app reaches them, from the app's own setting names: SAS connection
strings (IOT_HUB_CONNECTION_STRINGS) and/or the caller's Entra identity
(IOT_HUB_MANAGED_IDENTITY_HUBS, with IOT_HUB_ENDPOINTS and IOT_HUB_CA_BUNDLE for an emulator)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from iothub_client import HubConnections
from iothub_client.sdk_adapter import SdkIotHubRegistry
from operator_cli.errors import ConfigurationError

HUB_SETTINGS = ("IOT_HUB_CONNECTION_STRINGS", "IOT_HUB_MANAGED_IDENTITY_HUBS")
HUB_TIMEOUT_SECONDS = 10.0


def hub_connections(environ: Mapping[str, str]) -> HubConnections:
    strings = _json(environ, "IOT_HUB_CONNECTION_STRINGS", {})
    endpoints = _json(environ, "IOT_HUB_ENDPOINTS", {})
    if not isinstance(strings, dict) or not isinstance(endpoints, dict):
        raise ConfigurationError("IOT_HUB_CONNECTION_STRINGS and IOT_HUB_ENDPOINTS are objects")
    try:
        by_sas = HubConnections.from_connection_strings(
            {str(k): str(v) for k, v in strings.items()}
        )
    except ValueError as exc:
        raise ConfigurationError(f"IOT_HUB_CONNECTION_STRINGS: {exc}") from None
    names = environ.get("IOT_HUB_MANAGED_IDENTITY_HUBS", "").split(",")
    by_identity = HubConnections.managed_identity(
        [name.strip() for name in names if name.strip()],
        {str(k): str(v) for k, v in endpoints.items()},
    )
    connections = HubConnections([*by_sas.values(), *by_identity.values()])
    if not connections:
        raise ConfigurationError(
            "no IoT hub to check: set IOT_HUB_CONNECTION_STRINGS or IOT_HUB_MANAGED_IDENTITY_HUBS"
        )
    return connections


def hub_registry(environ: Mapping[str, str]) -> SdkIotHubRegistry:
    client_id = environ.get("AZURE_CLIENT_ID", "").strip() or None

    def credential() -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=client_id)

    return SdkIotHubRegistry(
        hub_connections(environ),
        timeout_seconds=HUB_TIMEOUT_SECONDS,
        ca_bundle=environ.get("IOT_HUB_CA_BUNDLE", "").strip() or None,
        credential_factory=credential,
    )


def _json(environ: Mapping[str, str], name: str, default: Any) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{name} is not valid JSON") from None
