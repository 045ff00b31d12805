"""Token credentials from azure-identity, as an identity-based connection asks for them.

`__credential = managedidentity` is the app's managed identity (a user-assigned one by client or
resource id); anything else is DefaultAzureCredential, which tries the environment, workload
identity, managed identity and a developer's sign-in in turn. azure-identity is imported here,
on first use, so that a connection-string deployment never loads it.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ClientAuthenticationError

from storage_access.connection import StorageIdentity

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential


class TokenUnavailable(ClientAuthenticationError):
    """The credential gave no token (no managed identity, a wrong client id, the identity
    endpoint down): told apart from the service refusing a token it was sent."""


class StorageCredential:
    """The account's credential, whose failures to produce a token are TokenUnavailable."""

    def __init__(self, inner: AsyncTokenCredential) -> None:
        self._inner = inner

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        try:
            return await self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        except ClientAuthenticationError as exc:
            # Only the class: the chain's text lists every credential it tried and why.
            raise TokenUnavailable(type(exc).__name__) from None

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> StorageCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def async_credential(identity: StorageIdentity | None) -> AsyncTokenCredential:
    """For the SDKs' async clients (Storage, the asset API's token)."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if identity is not None and identity.managed_identity:
        if identity.resource_id:
            return ManagedIdentityCredential(identity_config={"resource_id": identity.resource_id})
        return ManagedIdentityCredential(client_id=identity.client_id)
    return DefaultAzureCredential(
        managed_identity_client_id=identity.client_id if identity else None
    )


def sync_credential(identity: StorageIdentity | None) -> TokenCredential:
    """For the synchronous SDKs (azure-iot-hub runs in worker threads)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if identity is not None and identity.managed_identity:
        if identity.resource_id:
            return ManagedIdentityCredential(identity_config={"resource_id": identity.resource_id})
        return ManagedIdentityCredential(client_id=identity.client_id)
    return DefaultAzureCredential(
        managed_identity_client_id=identity.client_id if identity else None
    )
