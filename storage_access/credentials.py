"""Token credentials from azure-identity, as an identity-based connection asks for them.

`__credential = managedidentity` is the app's managed identity (a user-assigned one by client or
resource id); anything else is DefaultAzureCredential, which tries the environment, workload
identity, managed identity and a developer's sign-in in turn. azure-identity is imported here,
on first use, so that a connection-string deployment never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage_access.connection import StorageIdentity

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential


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
