"""Which storage account a binding's `connection` names, read as the Functions host reads it.

A connection is either a connection string, or identity-based: service URIs plus how to get a
token. The host looks, case-insensitively, for `<name>`, then `AzureWebJobs<name>`, then
`ConnectionStrings__<name>` holding a connection string; failing those, for settings that start
with `<name>__` (docs/contracts.md, "Identity-based connections"):

- `__blobServiceUri` (or `__serviceUri`), `__queueServiceUri`, `__tableServiceUri`; or
  `__accountName`, from which the public-cloud URIs follow;
- `__credential` = `managedidentity` with `__clientId` or `__managedIdentityResourceId` (not
  both) for a user-assigned identity; without `__credential`, the developer's own identity
  (DefaultAzureCredential).

Pure: no SDK, no I/O. Errors name the setting and never quote a value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from app_errors import Misconfigured

Service = Literal["blob", "queue", "table"]
SERVICES: tuple[Service, ...] = ("blob", "queue", "table")
_PUBLIC_SUFFIX = "core.windows.net"


class StorageConfigError(Misconfigured, ValueError):
    """The connection's settings are missing or wrong; the message names the setting."""


@dataclass(frozen=True)
class StorageIdentity:
    """How an identity-based connection gets its tokens."""

    managed_identity: bool
    """`__credential = managedidentity`: the app's managed identity; else DefaultAzureCredential
    (a developer's sign-in locally, or whatever the environment provides)."""
    client_id: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class StorageAccount:
    """One storage account as a connection names it: a connection string, or service URIs and
    an identity. Only `setting` and the URIs are ever shown."""

    setting: str
    connection_string: str | None = field(default=None, repr=False)
    service_uris: Mapping[Service, str] = field(default_factory=dict)
    identity: StorageIdentity | None = None

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None

    def service_uri(self, service: Service) -> str:
        """The service's endpoint, for an identity-based connection."""
        uri = self.service_uris.get(service)
        if uri is None:
            raise StorageConfigError(
                f"connection {self.setting} is identity-based but names no {service} service: "
                f"set {self.setting}__{service}ServiceUri (or {self.setting}__accountName)"
            )
        return uri

    def describe(self) -> str:
        """For logs and errors: the setting and, when identity-based, the endpoints."""
        if not self.identity_based:
            return f"{self.setting} (connection string)"
        uris = ", ".join(f"{service} {uri}" for service, uri in sorted(self.service_uris.items()))
        return f"{self.setting} (identity-based: {uris})"


def storage_account_from_connection_string(connection_string: str, setting: str) -> StorageAccount:
    return StorageAccount(setting=setting, connection_string=connection_string)


def resolve_storage_account(name: str | None, environ: Mapping[str, str]) -> StorageAccount:
    """The storage account `name` (default AzureWebJobsStorage) names in `environ`."""
    name = name or "AzureWebJobsStorage"
    values = {key.lower(): (key, value.strip()) for key, value in environ.items() if value.strip()}
    for candidate in (name, f"AzureWebJobs{name}", f"ConnectionStrings__{name}"):
        found = values.get(candidate.lower())
        if found is not None:
            return StorageAccount(setting=found[0], connection_string=found[1])
    prefix = f"{name}__".lower()
    parts = {
        low.removeprefix(prefix): (key, value)
        for low, (key, value) in values.items()
        if low.startswith(prefix)
    }
    if not parts:
        raise StorageConfigError(
            f"no storage connection {name}: set {name} to a connection string "
            f"(UseDevelopmentStorage=true for Azurite), or {name}__queueServiceUri, "
            f"__tableServiceUri and __blobServiceUri (or {name}__accountName) for an "
            "identity-based connection"
        )
    return StorageAccount(
        setting=name, service_uris=_service_uris(name, parts), identity=_identity(name, parts)
    )


def _service_uris(name: str, parts: Mapping[str, tuple[str, str]]) -> dict[Service, str]:
    uris: dict[Service, str] = {}
    account = parts.get("accountname")
    if account is not None:
        account_name = account[1]
        if not account_name.isalnum() or not 3 <= len(account_name) <= 24:
            raise StorageConfigError(f"{account[0]} must be a storage account name (3-24 a-z0-9)")
        for service in SERVICES:
            uris[service] = f"https://{account_name.lower()}.{service}.{_PUBLIC_SUFFIX}"
    named: dict[Service, tuple[str, ...]] = {
        "blob": ("blobserviceuri", "serviceuri"),
        "queue": ("queueserviceuri",),
        "table": ("tableserviceuri",),
    }
    for service, keys in named.items():
        for key in keys:
            if key in parts:
                setting, value = parts[key]
                uris[service] = _checked_uri(setting, value)
                break
    if not uris:
        raise StorageConfigError(
            f"connection {name} is identity-based but names no service: set "
            f"{name}__queueServiceUri, __tableServiceUri and __blobServiceUri, or "
            f"{name}__accountName"
        )
    return uris


def _checked_uri(setting: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise StorageConfigError(f"{setting} must be an https:// URI of a storage service")
    # Bearer tokens only travel over TLS (azure-core refuses otherwise); http stays possible
    # for a loopback emulator, where it fails with azure-core's own clear error.
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise StorageConfigError(f"{setting} must use https:// (tokens never travel in clear)")
    return value.rstrip("/")


def _identity(name: str, parts: Mapping[str, tuple[str, str]]) -> StorageIdentity:
    credential = parts.get("credential")
    client_id = parts.get("clientid")
    resource_id = parts.get("managedidentityresourceid")
    if client_id and resource_id:
        raise StorageConfigError(
            f"set one of {name}__clientId and {name}__managedIdentityResourceId, not both"
        )
    if credential is not None and credential[1].lower() != "managedidentity":
        raise StorageConfigError(f"{credential[0]} must be 'managedidentity' when it is set")
    return StorageIdentity(
        managed_identity=credential is not None,
        client_id=client_id[1] if client_id else None,
        resource_id=resource_id[1] if resource_id else None,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
