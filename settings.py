"""Every app setting, read once from the environment (Azure app settings / local.settings.json)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from app_errors import Misconfigured
from storage_access import StorageAccount, StorageConfigError, resolve_storage_account

APP_ROOT = Path(__file__).resolve().parent


class ConfigurationError(Misconfigured, RuntimeError):
    """A setting or the policy file is wrong; the message names which and why."""


STORAGE_CONNECTION = "AzureWebJobsStorage"
"""The app keeps its queues and audit table in the Functions storage account."""
_QUEUE_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


class StorageSettings(BaseSettings):
    """What the app and the operator CLI both need of storage: queue and table names, the
    message encoding. The account itself (a connection string, or identity-based) is read from
    the AzureWebJobsStorage settings by storage_account()."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    reconciliation_queue: str = Field(
        "reconciliation", pattern=_QUEUE_NAME, validation_alias="RECONCILIATION_QUEUE"
    )
    dead_letter_queue: str = Field(
        "dead-letters", pattern=_QUEUE_NAME, validation_alias="DEAD_LETTER_QUEUE"
    )
    audit_queue: str = Field("audit", pattern=_QUEUE_NAME, validation_alias="AUDIT_QUEUE")
    audit_table: str = Field(
        "audit", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", validation_alias="AUDIT_TABLE"
    )
    queue_message_encoding: Literal["base64", "none"] = Field(
        "base64", validation_alias="QUEUE_MESSAGE_ENCODING"
    )
    storage_ca_bundle: Path | None = Field(None, validation_alias="STORAGE_CA_BUNDLE")
    """A PEM bundle to trust for storage over HTTPS (a local emulator); unset on Azure."""


def storage_account(environ: Mapping[str, str] | None = None) -> StorageAccount:
    """The storage account of AzureWebJobsStorage, else ConfigurationError naming the setting."""
    try:
        return resolve_storage_account(
            STORAGE_CONNECTION, os.environ if environ is None else environ
        )
    except StorageConfigError as exc:
        raise ConfigurationError(str(exc)) from None


class AppSettings(StorageSettings):
    """Names are the app-setting names; the README's configuration reference lists them all."""

    asset_api_url: AnyHttpUrl = Field(validation_alias="ASSET_API_URL")
    asset_api_key: SecretStr | None = Field(None, validation_alias="ASSET_API_KEY")
    """An API key (on Azure, a Key Vault reference); or else ASSET_API_AUDIENCE."""
    asset_api_audience: str | None = Field(
        None, min_length=1, max_length=256, validation_alias="ASSET_API_AUDIENCE"
    )
    """The asset API's Entra ID application (e.g. api://contoso-assets): the app calls it with
    its managed identity's token for `<audience>/.default`."""
    asset_api_timeout_seconds: float = Field(
        2.0, gt=0, le=30, validation_alias="ASSET_API_TIMEOUT_SECONDS"
    )
    asset_api_max_connections: int = Field(
        100, ge=1, le=1000, validation_alias="ASSET_API_MAX_CONNECTIONS"
    )
    asset_management_public_url: AnyHttpUrl | None = Field(
        None, validation_alias="ASSET_MANAGEMENT_PUBLIC_URL"
    )
    policy_file: Path = Field(validation_alias="POLICY_FILE")
    iot_hub_connection_strings: SecretStr | None = Field(
        None, validation_alias="IOT_HUB_CONNECTION_STRINGS"
    )
    iot_hub_managed_identity_hubs: str | None = Field(
        None, validation_alias="IOT_HUB_MANAGED_IDENTITY_HUBS"
    )
    azure_client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")
    """The user-assigned managed identity the app's own token calls use (IoT Hub, the asset
    API), as azure-identity reads it; unset means the system-assigned identity."""
    iot_hub_endpoints: dict[str, str] = Field(
        default_factory=dict, validation_alias="IOT_HUB_ENDPOINTS"
    )
    iot_hub_ca_bundle: Path | None = Field(None, validation_alias="IOT_HUB_CA_BUNDLE")
    iot_hub_timeout_seconds: float = Field(
        5.0, gt=0, le=60, validation_alias="IOT_HUB_TIMEOUT_SECONDS"
    )
    iot_hub_twin_updates_per_second: float = Field(
        40.0, gt=0, le=10_000, validation_alias="IOT_HUB_TWIN_UPDATES_PER_SECOND"
    )
    asset_api_max_attempts: int = Field(4, ge=1, le=10, validation_alias="ASSET_API_MAX_ATTEMPTS")
    asset_api_breaker_failures: int = Field(
        5, ge=1, le=100, validation_alias="ASSET_API_BREAKER_FAILURES"
    )
    asset_api_breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias="ASSET_API_BREAKER_RESET_SECONDS"
    )
    iot_hub_breaker_failures: int = Field(
        5, ge=1, le=100, validation_alias="IOT_HUB_BREAKER_FAILURES"
    )
    iot_hub_breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias="IOT_HUB_BREAKER_RESET_SECONDS"
    )
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = Field(
        None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    """An OTLP/HTTP receiver for the app's traces (a collector, a local viewer); the exporter
    reads it and the rest of the OTEL_EXPORTER_OTLP_* family itself."""
    applicationinsights_connection_string: SecretStr | None = Field(
        None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    """Application Insights, which the app's traces also go to (with the managed identity)."""
    _storage: StorageAccount | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _asset_api_auth(self) -> AppSettings:
        if self.asset_api_key is not None and self.asset_api_audience is not None:
            raise ValueError(
                "set one of ASSET_API_KEY and ASSET_API_AUDIENCE: an API key, or Entra ID tokens"
            )
        host = self.asset_api_url.host or ""
        if self.asset_api_url.scheme != "https" and not _loopback(host):
            raise ValueError(
                "ASSET_API_URL must be https:// outside the local stack (credentials travel "
                "with every call)"
            )
        return self

    @property
    def storage(self) -> StorageAccount:
        """AzureWebJobsStorage: a connection string or an identity-based connection."""
        if self._storage is None:
            self._storage = storage_account()
        return self._storage

    @property
    def policy_path(self) -> Path:
        """Relative paths are relative to the app root, as deployed (wwwroot)."""
        return self.policy_file if self.policy_file.is_absolute() else APP_ROOT / self.policy_file

    @property
    def public_asset_url(self) -> str:
        """The asset API address devices and operators see, written into desired properties."""
        return str(self.asset_management_public_url or self.asset_api_url).rstrip("/")

    def iot_hub_connection_map(self) -> dict[str, str]:
        """IOT_HUB_CONNECTION_STRINGS: a JSON object, hub host name -> service connection string."""
        if self.iot_hub_connection_strings is None:
            return {}
        parsed, problem = _decoded(self.iot_hub_connection_strings.get_secret_value())
        if problem is not None:
            raise ConfigurationError(
                "IOT_HUB_CONNECTION_STRINGS must be a JSON object of hub name -> connection "
                f"string ({problem})"
            )
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ConfigurationError(
                "IOT_HUB_CONNECTION_STRINGS must be a JSON object of hub name -> connection string"
            )
        return parsed

    def managed_identity_hubs(self) -> list[str]:
        names = (self.iot_hub_managed_identity_hubs or "").split(",")
        return [name.strip() for name in names if name.strip()]


def _decoded(text: str) -> tuple[Any, str | None]:
    """The JSON value, or the parser's words and position: never its exception, which keeps a
    copy of the text (`doc`) and would travel as the context of an error raised meanwhile."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except (ValueError, RecursionError) as exc:  # an integer too long, nesting too deep
        return None, f"{type(exc).__name__} while parsing"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings() -> AppSettings:
    """The settings, else ConfigurationError naming each bad setting but quoting no value.

    A value may be a key (a connection string pasted into the wrong setting), so neither the
    message nor the exception chain carries one: pydantic's own error text quotes its input.
    """
    try:
        settings = AppSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
    except SettingsError as exc:
        problems = _unparsable_setting(exc)
    else:
        settings._storage = storage_account()
        return settings
    # Raised outside the handlers: the error carries no chained exception that quotes a value.
    raise ConfigurationError(f"invalid app settings: {problems}")


_UNPARSABLE_FIELD = re.compile(r'field "(?P<field>\w+)"')


def _unparsable_setting(exc: SettingsError) -> str:
    """pydantic-settings could not decode a JSON setting; it names the field, not the setting."""
    match = _UNPARSABLE_FIELD.search(str(exc))
    field = AppSettings.model_fields.get(match["field"]) if match else None
    alias = field.validation_alias if field is not None else None
    return f"{alias if isinstance(alias, str) else 'a JSON setting'}: not valid JSON"
