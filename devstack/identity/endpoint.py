"""The identity service's ready file: where callers get tokens, and how resources verify them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .app import JWKS_PATH, TOKEN_PATH
from .tokens import SYSTEM_ASSIGNED_ID, TokenIssuer


def ready_info(
    url: str, issuer: TokenIssuer, *, identity_header: str, public_key_file: Path, lifetime: int
) -> dict[str, Any]:
    """The ready file's fields besides url, port and pid."""
    return {
        "identityEndpoint": f"{url}{TOKEN_PATH}",
        "identityHeader": identity_header,
        "publicKeyFile": str(public_key_file),
        "jwksUri": f"{url}{JWKS_PATH}",
        "issuer": issuer.issuer,
        "tenantId": issuer.tenant_id,
        "systemAssignedClientId": SYSTEM_ASSIGNED_ID,
        "tokenLifetimeSeconds": lifetime,
    }


@dataclass(frozen=True)
class IdentityEndpoint:
    """The identity service as a caller reads it back from the ready file."""

    endpoint: str
    header: str
    public_key_file: Path
    issuer: str
    tenant_id: str

    @classmethod
    def from_ready_info(cls, info: Mapping[str, Any]) -> IdentityEndpoint:
        return cls(
            endpoint=str(info["identityEndpoint"]),
            header=str(info["identityHeader"]),
            public_key_file=Path(info["publicKeyFile"]),
            issuer=str(info["issuer"]),
            tenant_id=str(info["tenantId"]),
        )

    def environment(self) -> dict[str, str]:
        """What App Service sets for a managed identity: azure-identity reads these two."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    def __repr__(self) -> str:
        return f"IdentityEndpoint(endpoint={self.endpoint!r}, header='***', ...)"
