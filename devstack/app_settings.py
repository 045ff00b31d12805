"""The app settings the running stack gives the function app: keyed, or keyless as on Azure.

Keyed, the app holds Azurite's connection string, each hub's service connection string and the
asset API key. Keyless, it holds none of them: storage is an identity-based connection (service
URIs and `credential = managedidentity`), the hubs are named by host name alone, the asset API
is called with a token for its audience, and the identity stand-in's endpoint is where
azure-identity gets every token, as App Service's managed-identity endpoint on Azure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.azurite import AzuriteChild
from devstack.identity import IdentityEndpoint

ASSET_API_AUDIENCE = "api://devstack-assets"
"""The asset service's Entra ID application in keyless mode (what its tokens must name)."""
TWIN_EVENTS_NAMESPACE = "devstack-twin-events.servicebus.windows.net"
"""The Event Hubs namespace a keyless twin trigger names; the dev host delivers the emulator's
notifications whatever it says, as it does for the keyed connection string."""
STORAGE = "AzureWebJobsStorage"
TWIN_EVENTS = "IOT_HUB_EVENTS_CONNECTION"
KEYED_SETTINGS = ("ASSET_API_KEY", "IOT_HUB_CONNECTION_STRINGS", STORAGE, TWIN_EVENTS)
"""Blank in keyless mode, so that no value from local.settings.json fills them in."""


@dataclass(frozen=True)
class StackEndpoints:
    """What the app must reach, as the started parts announced it."""

    asset_api: str
    asset_key: str
    hubs: Mapping[str, Mapping[str, Any]]
    """Hub host name -> the emulator's ready info for it (hostName, connectionString)."""
    azurite: AzuriteChild
    ca_cert: Path
    twin_events_hub: str


def keyed_settings(endpoints: StackEndpoints) -> dict[str, str]:
    return _common(endpoints) | {
        "ASSET_API_KEY": endpoints.asset_key,
        "IOT_HUB_CONNECTION_STRINGS": json.dumps(
            {name: hub["connectionString"] for name, hub in endpoints.hubs.items()}
        ),
        STORAGE: endpoints.azurite.connection_string,
    }


def keyless_settings(endpoints: StackEndpoints, identity: IdentityEndpoint) -> dict[str, str]:
    azurite = endpoints.azurite
    if not azurite.oauth:
        raise ValueError("keyless settings need Azurite over HTTPS with OAuth")
    storage = {
        f"{STORAGE}__{service}ServiceUri": uri for service, uri in azurite.service_uris.items()
    }
    return (
        _common(endpoints)
        | dict.fromkeys(KEYED_SETTINGS, "")
        | identity.environment()
        | {
            "ASSET_API_AUDIENCE": ASSET_API_AUDIENCE,
            "IOT_HUB_MANAGED_IDENTITY_HUBS": ",".join(endpoints.hubs),
            "IOT_HUB_ENDPOINTS": json.dumps(
                {name: hub["hostName"] for name, hub in endpoints.hubs.items()}
            ),
            **storage,
            f"{STORAGE}__credential": "managedidentity",
            "STORAGE_CA_BUNDLE": str(endpoints.ca_cert),
            f"{TWIN_EVENTS}__fullyQualifiedNamespace": TWIN_EVENTS_NAMESPACE,
        }
    )


def _common(endpoints: StackEndpoints) -> dict[str, str]:
    return {
        "ASSET_API_URL": endpoints.asset_api,
        "IOT_HUB_CA_BUNDLE": str(endpoints.ca_cert),
        "TWIN_EVENTS_HUB": endpoints.twin_events_hub,
    }
