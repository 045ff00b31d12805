"""What the smoke test reads from the environment (docs/enrollment-and-smoke.md lists it all).

DPS comes as for `enrollment` (dps_config), the hubs from hub_config; the asset API and storage
come from the app's own setting names, so a deployment hands the smoke test what it hands the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asset_client.auth import ApiKey, AssetApiAuth, EntraToken
from operator_cli.errors import ConfigurationError

ID_SCOPE_ENV = "DPS_ID_SCOPE"
DEVICE_ENDPOINT_ENV = "DPS_DEVICE_ENDPOINT"
GROUP_FILE_ENV = "SMOKE_GROUP_FILE"
ASSET_ID_ENV = "SMOKE_ASSET_ID"
ASSET_TYPE_ENV = "SMOKE_ASSET_TYPE"
ASSET_LOCATION_ENV = "SMOKE_ASSET_LOCATION"
TIMEOUT_ENV = "SMOKE_TIMEOUT_SECONDS"
DEFAULT_GROUP_FILE = Path("enrollment") / "groups" / "smoke-x509.json"
DEFAULT_ASSET_ID = "SMOKE-0001"
DEFAULT_ASSET_TYPE = "smoke-sensor"
DEFAULT_ASSET_LOCATION = "smoke/post-deploy"
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class SmokeSettings:
    id_scope: str
    device_endpoint: str
    asset_id: str
    asset_type: str
    asset_location: str
    timeout: float
    asset_api_url: str
    asset_auth: AssetApiAuth | None = field(repr=False)


def smoke_settings(environ: Mapping[str, str]) -> SmokeSettings:
    from operator_cli.smoke_device import GLOBAL_ENDPOINT

    id_scope = environ.get(ID_SCOPE_ENV, "").strip()
    if not id_scope:
        raise ConfigurationError(f"{ID_SCOPE_ENV} is not set (the DPS instance's ID scope)")
    asset_url = environ.get("ASSET_API_URL", "").strip()
    if not asset_url:
        raise ConfigurationError("ASSET_API_URL is not set (the asset API the app calls)")
    raw_timeout = environ.get(TIMEOUT_ENV, "").strip()
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigurationError(f"{TIMEOUT_ENV} must be a number of seconds") from None
    if not 5 <= timeout <= 3600:
        raise ConfigurationError(f"{TIMEOUT_ENV} must be from 5 to 3600 seconds")
    return SmokeSettings(
        id_scope=id_scope,
        device_endpoint=environ.get(DEVICE_ENDPOINT_ENV, "").strip() or GLOBAL_ENDPOINT,
        asset_id=environ.get(ASSET_ID_ENV, "").strip() or DEFAULT_ASSET_ID,
        asset_type=environ.get(ASSET_TYPE_ENV, "").strip() or DEFAULT_ASSET_TYPE,
        asset_location=environ.get(ASSET_LOCATION_ENV, "").strip() or DEFAULT_ASSET_LOCATION,
        timeout=timeout,
        asset_api_url=asset_url,
        asset_auth=_asset_auth(environ),
    )


def _asset_auth(environ: Mapping[str, str]) -> AssetApiAuth | None:
    audience = environ.get("ASSET_API_AUDIENCE", "").strip()
    if audience:
        from azure.identity.aio import DefaultAzureCredential

        client_id = environ.get("AZURE_CLIENT_ID", "").strip() or None
        return EntraToken(DefaultAzureCredential(managed_identity_client_id=client_id), audience)
    key = environ.get("ASSET_API_KEY", "").strip()
    return ApiKey(key) if key else None
