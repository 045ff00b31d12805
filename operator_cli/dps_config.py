"""Where the enrollment and smoke commands find DPS, the webhook and the CAs.

Read from flags first, then the environment (the names below, which azd's postdeploy hook
sets); documented in docs/enrollment-and-smoke.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from operator_cli.dps_auth import EntraAuth, SasAuth, ServiceAuth, parse_connection_string
from operator_cli.errors import ConfigurationError

DPS_CONNECTION_ENV = "DPS_CONNECTION_STRING"
DPS_SERVICE_HOST_ENV = "DPS_SERVICE_HOST"
DPS_CA_BUNDLE_ENV = "DPS_CA_BUNDLE"
WEBHOOK_URL_ENV = "ALLOCATION_WEBHOOK_URL"
FUNCTION_KEY_ENV = "ALLOCATION_FUNCTION_KEY"
FUNCTION_KEY_FILE_ENV = "ALLOCATION_FUNCTION_KEY_FILE"
GROUPS_DIR_ENV = "ENROLLMENT_GROUPS_DIR"
CA_DIR_ENV = "ENROLLMENT_CA_DIR"
LOCAL_CA_DIR_ENV = "ENROLLMENT_LOCAL_CA_DIR"
DEFAULT_GROUPS_DIR = Path("enrollment") / "groups"
DEFAULT_CA_DIR = Path("enrollment") / "ca"
DEFAULT_LOCAL_CA_DIR = Path(".enrollment") / "ca"


@dataclass(frozen=True)
class ServiceTarget:
    host_name: str
    auth: ServiceAuth = field(repr=False)
    ca_bundle: str | None


@dataclass(frozen=True)
class Webhook:
    url: str
    function_key: str | None = field(repr=False)


def service_target(environ: Mapping[str, str]) -> ServiceTarget:
    """SAS when DPS_CONNECTION_STRING is set, else Entra ID for DPS_SERVICE_HOST."""
    ca_bundle = environ.get(DPS_CA_BUNDLE_ENV, "").strip() or None
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ConfigurationError(f"{DPS_CA_BUNDLE_ENV} names {ca_bundle}, which is not a file")
    connection = environ.get(DPS_CONNECTION_ENV, "").strip()
    if connection:
        parsed = parse_connection_string(connection, DPS_CONNECTION_ENV)
        return ServiceTarget(parsed.host_name, SasAuth(parsed), ca_bundle)
    host = environ.get(DPS_SERVICE_HOST_ENV, "").strip()
    if host:
        if "/" in host:
            raise ConfigurationError(
                f"{DPS_SERVICE_HOST_ENV} is a host name (mydps.azure-devices-provisioning.net), "
                "not a URL"
            )
        return ServiceTarget(host, EntraAuth(), ca_bundle)
    raise ConfigurationError(
        f"no DPS to talk to: set {DPS_CONNECTION_ENV} (shared access policy) or "
        f"{DPS_SERVICE_HOST_ENV} (Entra ID with DefaultAzureCredential)"
    )


def webhook(
    flag_url: str | None, flag_key_file: Path | None, environ: Mapping[str, str]
) -> Webhook:
    """The allocation function's URL and its key; the key never comes from a command line."""
    url = (flag_url or environ.get(WEBHOOK_URL_ENV, "")).strip()
    if not url:
        raise ConfigurationError(
            f"no webhook URL: set {WEBHOOK_URL_ENV} (or --webhook-url) to the allocation "
            "function's URL, e.g. https://<app>.azurewebsites.net/api/allocate"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{WEBHOOK_URL_ENV} must be an http(s) URL with a host")
    if any(name == "code" for name, _ in parse_qsl(parts.query)):
        raise ConfigurationError(
            f"{WEBHOOK_URL_ENV} must not carry the function key (code=...): give it in "
            f"{FUNCTION_KEY_ENV} or {FUNCTION_KEY_FILE_ENV}, so it is never shown"
        )
    return Webhook(
        url, function_key(environ, FUNCTION_KEY_ENV, FUNCTION_KEY_FILE_ENV, flag_key_file)
    )


def function_key(
    environ: Mapping[str, str], key_env: str, key_file_env: str, flag_key_file: Path | None = None
) -> str | None:
    """A function key from the file (flag, else `key_file_env`), else `key_env`; None if unset."""
    key_file = flag_key_file or (Path(environ[key_file_env]) if environ.get(key_file_env) else None)
    key = environ.get(key_env, "").strip() or None
    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the function key file {key_file}: {type(exc).__name__}"
            ) from None
        if key is None:
            raise ConfigurationError(f"the function key file {key_file} is empty")
    if key is not None and (len(key) > 512 or any(c.isspace() for c in key)):
        raise ConfigurationError("the function key holds whitespace or is too long")
    return key


def directory(flag: Path | None, environ: Mapping[str, str], env: str, default: Path) -> Path:
    if flag is not None:
        return flag
    value = environ.get(env, "").strip()
    return Path(value) if value else default
