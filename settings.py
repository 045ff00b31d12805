"""Every app setting, read once from the environment (Azure app settings / local.settings.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

APP_ROOT = Path(__file__).resolve().parent


class ConfigurationError(RuntimeError):
    """A setting or the policy file is wrong; the message names which and why."""


class AppSettings(BaseSettings):
    """Names are the app-setting names; the README's configuration reference lists them all."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    asset_api_url: AnyHttpUrl = Field(validation_alias="ASSET_API_URL")
    asset_api_key: SecretStr | None = Field(None, validation_alias="ASSET_API_KEY")
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
    iot_hub_managed_identity_client_id: str | None = Field(
        None, validation_alias="IOT_HUB_MANAGED_IDENTITY_CLIENT_ID"
    )
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
    storage_connection: SecretStr = Field(validation_alias="AzureWebJobsStorage")
    reconciliation_queue: str = Field(
        "reconciliation",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        validation_alias="RECONCILIATION_QUEUE",
    )
    dead_letter_queue: str = Field(
        "dead-letters",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        validation_alias="DEAD_LETTER_QUEUE",
    )
    audit_queue: str = Field(
        "audit",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        validation_alias="AUDIT_QUEUE",
    )
    audit_table: str = Field(
        "audit", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", validation_alias="AUDIT_TABLE"
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
    queue_message_encoding: Literal["base64", "none"] = Field(
        "base64", validation_alias="QUEUE_MESSAGE_ENCODING"
    )

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


def load_settings() -> AppSettings:
    """The settings, else ConfigurationError naming each bad setting but quoting no value.

    A value may be a key (a connection string pasted into the wrong setting), so neither the
    message nor the exception chain carries one: pydantic's own error text quotes its input.
    """
    try:
        return AppSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
    except SettingsError as exc:
        problems = _unparsable_setting(exc)
    # Raised outside the handlers: the error carries no chained exception that quotes a value.
    raise ConfigurationError(f"invalid app settings: {problems}")


_UNPARSABLE_FIELD = re.compile(r'field "(?P<field>\w+)"')


def _unparsable_setting(exc: SettingsError) -> str:
    """pydantic-settings could not decode a JSON setting; it names the field, not the setting."""
    match = _UNPARSABLE_FIELD.search(str(exc))
    field = AppSettings.model_fields.get(match["field"]) if match else None
    alias = field.validation_alias if field is not None else None
    return f"{alias if isinstance(alias, str) else 'a JSON setting'}: not valid JSON"
