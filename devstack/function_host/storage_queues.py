"""Azure Storage queues as the Functions host's Storage Queues extension reaches them.

Connections are app settings holding a storage connection string (`UseDevelopmentStorage=true`
means Azurite on 127.0.0.1:10001) or identity-based ones (`<name>__queueServiceUri`, ...),
read by the app's own storage_access package as the host reads them. Queue names are
`%setting%`-resolved and validated like the extension does, and message text is encoded per
host.json `messageEncoding`. Clients are the Storage SDK's async ones (aiohttp), one per
storage account, shared by triggers and outputs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.queue._shared.policies_async import LinearRetry
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devstack.function_host.app_settings import UnresolvedSetting, resolve_setting_references
from devstack.function_host.host_config import MessageEncoding
from storage_access import StorageAccount, StorageConfigError, resolve_storage_account
from storage_access.clients import validate_connection_string
from storage_access.credentials import async_credential

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

DEFAULT_CONNECTION = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
# Queue names: 3-63 lower-case letters, digits and single hyphens, starting and ending with
# a letter or digit (the extension lower-cases the name before checking it).
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
# Requests fail within a couple of seconds when storage is down, instead of the SDK's
# default 15 s + 18 s + 24 s back-off: a dev host should say so quickly.
_RETRIES = 2
_RETRY_BACKOFF_SECONDS = 1
_CONNECT_TIMEOUT_SECONDS = 5
_READ_TIMEOUT_SECONDS = 30
# The SDK logs every request and response at INFO; the Functions host shows none of that. A
# logger of our own keeps the app's SDK clients (and the azure.* loggers) untouched.
_SDK_LOGGER = logging.getLogger("devstack.function_host.storage_sdk")
_SDK_LOGGER.setLevel(logging.WARNING)


class QueueConfigError(ValueError):
    """A queue binding cannot be resolved (connection, queue name); the message says why."""


class BadMessageEncoding(ValueError):
    """A message's text is not valid for the configured messageEncoding (base64)."""


@dataclass(frozen=True)
class StorageConnection:
    """A storage account as a queue binding's `connection` names it."""

    account: StorageAccount

    @property
    def setting(self) -> str:
        return self.account.setting

    @property
    def key(self) -> str:
        """Identifies the account (for client caching), never shown."""
        return self.account.connection_string or self.account.service_uri("queue")


def resolve_connection(connection: str | None, environ: Mapping[str, str]) -> StorageConnection:
    """The storage account a binding's `connection` names, found as the WebJobs SDK looks:
    a connection string under `<name>`, `AzureWebJobs<name>` or `ConnectionStrings__<name>`
    (case-insensitively), else identity-based `<name>__queueServiceUri` and friends. An empty
    name means AzureWebJobsStorage."""
    try:
        account = resolve_storage_account(connection or DEFAULT_CONNECTION, environ)
        validate_connection_string(account)
        if account.identity_based:
            account.service_uri("queue")
    except StorageConfigError as exc:
        raise QueueConfigError(str(exc)) from None
    return StorageConnection(account)


def resolve_queue_name(raw: str, environ: Mapping[str, str]) -> str:
    """`%setting%` resolved, lower-cased and validated, as the extension's NormalizeAndValidate."""
    try:
        name = resolve_setting_references(raw, environ).lower()
    except UnresolvedSetting as exc:
        raise QueueConfigError(str(exc)) from None
    if "{" in name or "}" in name:
        raise QueueConfigError(
            f"queue name {raw!r} uses a binding expression, which the dev host does not resolve"
        )
    if not _QUEUE_NAME.match(name):
        raise QueueConfigError(
            f"invalid queue name {name!r}: 3-63 characters of letters, digits and single "
            "hyphens, starting and ending with a letter or digit"
        )
    return name


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`; a poison queue itself has none (the extension never nests them)."""
    if queue_name.endswith(POISON_SUFFIX):
        return None
    return queue_name + POISON_SUFFIX


# --- message text --------------------------------------------------------------------------


def encode_message(content: str | bytes, encoding: MessageEncoding) -> str:
    """Message text for `content`: base64 of its bytes, or the text itself with encoding none."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    # QueueMessageEncoding.None sends BinaryData as UTF-8 text.
    return content if isinstance(content, str) else data.decode("utf-8", errors="replace")


def decode_message(text: str, encoding: MessageEncoding) -> bytes:
    """The body of a received message; BadMessageEncoding if base64 text does not decode."""
    if encoding == "none":
        return text.encode("utf-8")
    # Convert.FromBase64String ignores white space but insists on the alphabet and padding.
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadMessageEncoding(f"message text is not valid base64: {exc}") from None


# --- clients -------------------------------------------------------------------------------


class QueueClients:
    """Async Storage SDK clients, one service client per account; close() once at shutdown.

    An identity-based account gets its token from azure-identity, as the host's would (a
    managed identity on Azure, the devstack's identity stand-in locally); STORAGE_CA_BUNDLE,
    when set, is the CA to trust for the account's HTTPS endpoints (a local Azurite).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._services: dict[str, QueueServiceClient] = {}
        self._queues: dict[tuple[str, str], QueueClient] = {}
        self._credentials: list[AsyncTokenCredential] = []
        ca_bundle = (environ or {}).get("STORAGE_CA_BUNDLE", "").strip()
        self._verify: str | bool = ca_bundle or True

    def queue(self, connection: StorageConnection, queue_name: str) -> QueueClient:
        """The client of one queue; clients of one account share its HTTP session."""
        key = (connection.key, queue_name)
        cached = self._queues.get(key)
        if cached is not None:
            return cached
        service = self._services.get(connection.key)
        if service is None:
            service = self._service(connection.account)
            self._services[connection.key] = service
        client = service.get_queue_client(queue_name)
        self._queues[key] = client
        return client

    def _service(self, account: StorageAccount) -> QueueServiceClient:
        options: dict[str, Any] = {
            "retry_policy": LinearRetry(
                backoff=_RETRY_BACKOFF_SECONDS, retry_total=_RETRIES, random_jitter_range=0
            ),
            "connection_timeout": _CONNECT_TIMEOUT_SECONDS,
            "read_timeout": _READ_TIMEOUT_SECONDS,
            "logger": _SDK_LOGGER,
            # No ~/.netrc and proxy lookups in a thread on every message.
            "transport": AioHttpTransport(use_env_settings=False, connection_verify=self._verify),
        }
        if account.connection_string is not None:
            return QueueServiceClient.from_connection_string(account.connection_string, **options)
        credential = async_credential(account.identity)
        self._credentials.append(credential)
        return QueueServiceClient(account.service_uri("queue"), credential=credential, **options)

    async def create_if_missing(self, connection: StorageConnection, queue_name: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self.queue(connection, queue_name).create_queue()

    async def send(self, connection: StorageConnection, queue_name: str, text: str) -> None:
        """Add one message, creating the queue first if it is missing (AddMessageAndCreate...)."""
        client = self.queue(connection, queue_name)
        try:
            await client.send_message(text)
        except ResourceNotFoundError:
            await self.create_if_missing(connection, queue_name)
            await client.send_message(text)

    async def close(self) -> None:
        services, self._services, self._queues = list(self._services.values()), {}, {}
        for service in services:
            await service.close()
        credentials, self._credentials = self._credentials, []
        for credential in credentials:
            await credential.close()


def queue_key(connection: StorageConnection, queue_name: str) -> tuple[str, str]:
    """Identifies one queue of one account, for waking its listeners."""
    return (connection.key, queue_name)


class QueueWatcher:
    """Wakes a queue's listeners when this host adds a message to it (SharedQueueWatcher).

    Without it a listener that backed off to maxPollingInterval would notice a message sent by
    an output binding of the same host only on its next poll.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], list[asyncio.Event]] = {}

    def register(self, connection: StorageConnection, queue_name: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(queue_key(connection, queue_name), []).append(event)
        return event

    def notify(self, connection: StorageConnection, queue_name: str) -> None:
        for event in self._events.get(queue_key(connection, queue_name), []):
            event.set()
