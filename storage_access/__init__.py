"""The storage account the app uses: its connection (string or identity) and its clients."""

from storage_access.connection import (
    StorageAccount,
    StorageConfigError,
    StorageIdentity,
    resolve_storage_account,
    storage_account_from_connection_string,
)

__all__ = [
    "StorageAccount",
    "StorageConfigError",
    "StorageIdentity",
    "resolve_storage_account",
    "storage_account_from_connection_string",
]
