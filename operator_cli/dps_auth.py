"""Credentials for DPS's service API: a shared access signature or an Entra ID token.

SAS: from a DPS connection string (`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`),
each request signed with a token valid for an hour. Entra: DefaultAzureCredential's token for
https://azure-devices-provisioning.net/.default (the identity needs a DPS data role).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from operator_cli.errors import ConfigurationError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

ENTRA_SCOPE = "https://azure-devices-provisioning.net/.default"
TOKEN_SECONDS = 3600


class ServiceAuth(Protocol):
    """Gives the Authorization header of the next request."""

    async def header(self) -> str: ...

    async def close(self) -> None: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class DpsConnectionString:
    host_name: str
    policy: str
    key: str = field(repr=False)


def parse_connection_string(value: str, source: str) -> DpsConnectionString:
    """HostName, SharedAccessKeyName and SharedAccessKey; the error never quotes the value."""
    parts: dict[str, str] = {}
    for item in value.strip().split(";"):
        if not item:
            continue
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigurationError(f"{source} is not a DPS connection string (Name=value;...)")
        parts[name.strip().lower()] = text.strip()
    missing = [
        name
        for name, key in (
            ("HostName", "hostname"),
            ("SharedAccessKeyName", "sharedaccesskeyname"),
            ("SharedAccessKey", "sharedaccesskey"),
        )
        if not parts.get(key)
    ]
    if missing:
        raise ConfigurationError(f"{source} lacks {', '.join(missing)}")
    try:
        base64.b64decode(parts["sharedaccesskey"], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source}: SharedAccessKey is not base64") from None
    return DpsConnectionString(
        parts["hostname"], parts["sharedaccesskeyname"], parts["sharedaccesskey"]
    )


def sas_token(connection: DpsConnectionString, *, now: float, lifetime: int = TOKEN_SECONDS) -> str:
    """`SharedAccessSignature sr=&sig=&se=&skn=` for the whole service (sr = the host name)."""
    resource = connection.host_name.lower()
    expiry = str(int(now) + lifetime)
    message = f"{quote(resource, safe='')}\n{expiry}".encode()
    digest = hmac.new(base64.b64decode(connection.key), message, hashlib.sha256).digest()
    signature = quote(base64.b64encode(digest).decode(), safe="")
    return (
        f"SharedAccessSignature sr={quote(resource, safe='')}&sig={signature}"
        f"&se={expiry}&skn={quote(connection.policy, safe='')}"
    )


class SasAuth:
    def __init__(self, connection: DpsConnectionString) -> None:
        self._connection = connection

    @property
    def description(self) -> str:
        return f"shared access policy {self._connection.policy}"

    async def header(self) -> str:
        return sas_token(self._connection, now=time.time())

    async def close(self) -> None:
        return None


class EntraAuth:
    """DefaultAzureCredential: a managed identity, azd's or the Azure CLI's login."""

    def __init__(self, credential: AsyncTokenCredential | None = None) -> None:
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._credential = credential

    @property
    def description(self) -> str:
        return "Entra ID (DefaultAzureCredential)"

    async def header(self) -> str:
        token = await self._credential.get_token(ENTRA_SCOPE)
        return f"Bearer {token.token}"

    async def close(self) -> None:
        await self._credential.close()
