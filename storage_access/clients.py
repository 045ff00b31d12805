"""The one factory of Storage clients the app and the operator CLI use, per storage account.

It builds the SDK's async queue and table clients for a connection string or for an
identity-based connection (one token credential shared by every client of the account), with
the SDK's retries as the caller asks, and a transport whose session resends a request that an
idle connection's close turned away. It owns what it builds: aclose() closes every client and
the credential. Create clients inside the event loop that uses them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from storage_access.connection import (
    StorageAccount,
    StorageConfigError,
    storage_account_from_connection_string,
)
from storage_access.credentials import StorageCredential, async_credential

_POOL_SIZE = 100

if TYPE_CHECKING:
    import aiohttp
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient


class StorageClients:
    def __init__(
        self,
        account: StorageAccount,
        *,
        timeout_seconds: float = 5.0,
        retry_total: int = 0,
        connection_verify: str | bool = True,
    ) -> None:
        """`connection_verify`: a CA bundle to trust (a local emulator over HTTPS), or True."""
        self.account = account
        self._timeout = timeout_seconds
        self._retry_total = retry_total
        self._verify = connection_verify
        self._credential: AsyncTokenCredential | None = None
        self._queues: dict[str, QueueClient] = {}
        self._tables: dict[str, TableClient] = {}
        self._lock = asyncio.Lock()

    def queue(self, name: str) -> QueueClient:
        client = self._queues.get(name)
        if client is None:
            from azure.storage.queue.aio import QueueClient

            options = self._options()
            if self.account.connection_string is not None:
                client = QueueClient.from_connection_string(
                    self.account.connection_string, name, **options
                )
            else:
                client = QueueClient(
                    self.account.service_uri("queue"),
                    name,
                    credential=self._token_credential(),
                    **options,
                )
            self._queues[name] = client
        return client

    def table(self, name: str) -> TableClient:
        client = self._tables.get(name)
        if client is None:
            from azure.data.tables.aio import TableClient

            options = self._options()
            if self.account.connection_string is not None:
                client = TableClient.from_connection_string(
                    self.account.connection_string, name, **options
                )
            else:
                client = TableClient(
                    self.account.service_uri("table"),
                    name,
                    credential=self._token_credential(),
                    **options,
                )
            self._tables[name] = client
        return client

    async def aclose(self) -> None:
        """Close every client and the credential; clients asked for later are new ones."""
        queues, self._queues = self._queues, {}
        tables, self._tables = self._tables, {}
        for queue in queues.values():
            await queue.close()
        for table in tables.values():
            await table.close()
        credential, self._credential = self._credential, None
        if credential is not None:
            await credential.close()

    def _token_credential(self) -> AsyncTokenCredential:
        if self._credential is None:
            self._credential = StorageCredential(async_credential(self.account.identity))
        return self._credential

    def _options(self) -> dict[str, Any]:
        from azure.core.pipeline.transport import AioHttpTransport

        return {
            "retry_total": self._retry_total,
            "connection_timeout": self._timeout,
            "read_timeout": self._timeout,
            # No ~/.netrc and proxy lookups in a thread on every request, and a request an idle
            # connection's close turned away is resent (Azurite closes at 5 s). A transport
            # given to a client keeps its own connection settings, so the CA goes here.
            "transport": AioHttpTransport(
                session=storage_session(), session_owner=True, connection_verify=self._verify
            ),
        }


def storage_clients(
    storage: StorageClients | StorageAccount | str,
    *,
    timeout_seconds: float = 5.0,
    retry_total: int = 0,
) -> StorageClients:
    """The factory given, or one of its own for an account or a connection string."""
    if isinstance(storage, StorageClients):
        return storage
    if isinstance(storage, str):
        storage = storage_account_from_connection_string(storage, "connection string")
    return StorageClients(storage, timeout_seconds=timeout_seconds, retry_total=retry_total)


def storage_session() -> aiohttp.ClientSession:
    """An aiohttp session for an Azure SDK transport: a request that a reused connection's
    close turns away is sent again at once. Create it inside the event loop that will use it.
    """
    import aiohttp

    from resilience.idle_connections import resending_session

    return resending_session(
        pool_size=_POOL_SIZE,
        # As azure-core builds its own session: the SDK decompresses and keeps no cookies. And
        # trust_env stays off: aiohttp would read ~/.netrc and proxy variables on every request,
        # in a worker thread (40% of an allocation's time went there).
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


def validate_connection_string(account: StorageAccount) -> None:
    """A connection string the Storage SDK cannot read is a configuration error, named."""
    if account.connection_string is None:
        return
    from azure.storage.queue import QueueServiceClient

    try:
        QueueServiceClient.from_connection_string(account.connection_string)
    except ValueError:
        raise StorageConfigError(
            f"{account.setting} is not a storage connection string (it needs AccountName and "
            "AccountKey, endpoints with a SAS, or UseDevelopmentStorage=true)"
        ) from None
