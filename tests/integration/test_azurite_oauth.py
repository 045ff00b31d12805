"""Azurite over HTTPS with OAuth: the real Storage SDKs, keyless through the identity stand-in."""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.data.tables import TableClient
from azure.data.tables.aio import TableClient as AsyncTableClient
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.storage.queue import QueueClient
from azure.storage.queue.aio import QueueClient as AsyncQueueClient
from cryptography import x509

from devstack.azurite import STORAGE_AUDIENCE, AzuriteChild, AzuriteHttps, restart_service
from devstack.azurite import start_azurite as start
from devstack.identity.bad_tokens import BadTokens
from devstack.processes import stop_children
from devstack.tls import ensure_tls
from tests.integration.azurite_fixtures import azurite, azurite_oauth, unique_name
from tests.integration.identity_fixtures import (
    RunningIdentity,
    identity_service,
    managed_identity,
)

__all__ = ["azurite", "azurite_oauth", "identity_service", "managed_identity"]

STORAGE_SCOPE = f"{STORAGE_AUDIENCE}/.default"
API_VERSION = "2021-08-06"
REPO = Path(__file__).resolve().parents[2]


class _StaticToken:
    """A credential handing out one token: for tokens the identity service would never give."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def ca(azurite: AzuriteChild) -> str:
    assert azurite.ca_cert is not None
    return str(azurite.ca_cert)


def test_the_server_certificate_names_loopback_by_ip(azurite_oauth: AzuriteChild):
    assert azurite_oauth.https is not None
    certificate = x509.load_pem_x509_certificate(azurite_oauth.https.cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_every_service_is_announced_over_https(azurite_oauth: AzuriteChild):
    uris = azurite_oauth.service_uris
    assert set(uris) == {"blob", "queue", "table"}
    for service, uri in uris.items():
        port = getattr(azurite_oauth, f"{service}_port")
        assert uri == f"https://127.0.0.1:{port}/devstoreaccount1"
    for child in azurite_oauth.children:
        assert json.loads(child.ready_file.read_text())["url"].startswith("https://")
    assert "DefaultEndpointsProtocol=https;" in azurite_oauth.connection_string
    assert f"BlobEndpoint={uris['blob']};" in azurite_oauth.connection_string


def test_the_default_azurite_is_unchanged(azurite: AzuriteChild):
    assert (azurite.https, azurite.blob, azurite.blob_port, azurite.ca_cert) == (None,) * 4
    assert azurite.connection_string.startswith("DefaultEndpointsProtocol=http;")
    assert azurite.connection_string.endswith(
        f"QueueEndpoint={azurite.queue_url};TableEndpoint={azurite.table_url}"
    )
    assert set(azurite.service_uris) == {"queue", "table"}
    with pytest.raises(ValueError, match="blob"):
        _ = azurite.blob_url


def test_a_keyless_queue_client_sends_and_receives(
    azurite_oauth: AzuriteChild, managed_identity: RunningIdentity
):
    name = unique_name("mi")
    with QueueClient(
        account_url=azurite_oauth.queue_url,
        queue_name=name,
        credential=ManagedIdentityCredential(),
        connection_verify=ca(azurite_oauth),
    ) as queue:
        queue.create_queue()
        queue.send_message("hello, keyless")
        received = [message.content for message in queue.receive_messages()]
    assert received == ["hello, keyless"]


def test_a_keyless_table_client_writes_and_reads_an_entity(
    azurite_oauth: AzuriteChild, managed_identity: RunningIdentity
):
    with TableClient(
        endpoint=azurite_oauth.table_url,
        table_name=unique_name("mi"),
        credential=ManagedIdentityCredential(),
        connection_verify=ca(azurite_oauth),
    ) as table:
        table.create_table()
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "decision": "approved"})
        assert table.get_entity("p", "r")["decision"] == "approved"


async def test_the_async_clients_over_aiohttp_work_keyless(
    azurite_oauth: AzuriteChild, managed_identity: RunningIdentity
):
    async with (
        AsyncManagedIdentityCredential() as credential,
        AsyncQueueClient(
            account_url=azurite_oauth.queue_url,
            queue_name=unique_name("aio"),
            credential=credential,
            connection_verify=ca(azurite_oauth),
        ) as queue,
        AsyncTableClient(
            endpoint=azurite_oauth.table_url,
            table_name=unique_name("aio"),
            credential=credential,
            connection_verify=ca(azurite_oauth),
        ) as table,
    ):
        await queue.create_queue()
        await queue.send_message("async")
        assert [m.content async for m in queue.receive_messages()] == ["async"]
        await table.create_table()
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "n": 1})
        assert (await table.get_entity("p", "r"))["n"] == 1


def test_blob_takes_a_bearer_token_over_https(
    azurite_oauth: AzuriteChild, managed_identity: RunningIdentity
):
    token = ManagedIdentityCredential().get_token(STORAGE_SCOPE).token
    container = unique_name("leases")
    headers = {"Authorization": f"Bearer {token}", "x-ms-version": API_VERSION}
    trust = ssl.create_default_context(cafile=ca(azurite_oauth))
    with httpx.Client(verify=trust, headers=headers, timeout=10) as client:
        created = client.put(f"{azurite_oauth.blob_url}/{container}?restype=container")
        assert created.status_code == 201, created.text
        listed = client.get(f"{azurite_oauth.blob_url}?comp=list")
        assert listed.status_code == 200
        assert f"<Name>{container}</Name>" in listed.text
        bad = BadTokens(managed_identity.issuer()).for_another_audience()
        refused = client.get(
            f"{azurite_oauth.blob_url}?comp=list", headers={"Authorization": f"Bearer {bad}"}
        )
    assert refused.status_code == 403
    assert refused.headers["x-ms-error-code"] == "AuthenticationFailed"


def _refusal(azurite: AzuriteChild, token: str) -> HttpResponseError:
    credential = _StaticToken(token)
    queue = QueueClient(
        account_url=azurite.queue_url,
        queue_name=unique_name("bad"),
        credential=credential,
        connection_verify=ca(azurite),
        retry_total=0,
    )
    table = TableClient(
        endpoint=azurite.table_url,
        table_name=unique_name("bad"),
        credential=credential,
        connection_verify=ca(azurite),
        retry_total=0,
    )
    with queue, table:
        with pytest.raises(HttpResponseError) as table_refused:
            table.create_table()
        with pytest.raises(HttpResponseError) as queue_refused:
            queue.create_queue()
    for refused in (queue_refused.value, table_refused.value):
        assert refused.status_code == 403
        assert getattr(refused, "error_code", None) == "AuthenticationFailed"
        assert token not in str(refused)
    return queue_refused.value


def test_a_wrong_audience_or_an_expired_token_is_403(
    azurite_oauth: AzuriteChild, identity_service: RunningIdentity
):
    bad = BadTokens(identity_service.issuer())
    for token in (
        bad.for_another_audience("https://iothubs.azure.net"),
        bad.expired(STORAGE_AUDIENCE),
        bad.from_another_issuer(STORAGE_AUDIENCE),
    ):
        assert isinstance(_refusal(azurite_oauth, token), ClientAuthenticationError)


def test_azurite_does_not_check_signatures(
    azurite_oauth: AzuriteChild, identity_service: RunningIdentity
):
    """Documented for `--oauth basic`: only our own emulators catch a forged token."""
    forged = BadTokens(identity_service.issuer()).signed_by_another_key(STORAGE_AUDIENCE)
    with QueueClient(
        account_url=azurite_oauth.queue_url,
        queue_name=unique_name("forged"),
        credential=_StaticToken(forged),
        connection_verify=ca(azurite_oauth),
    ) as queue:
        queue.create_queue()


def test_the_account_key_still_works_over_https(azurite_oauth: AzuriteChild):
    with QueueClient.from_connection_string(
        azurite_oauth.connection_string, unique_name("key"), connection_verify=ca(azurite_oauth)
    ) as queue:
        queue.create_queue()
        queue.send_message("keyed")
        assert [m.content for m in queue.receive_messages()] == ["keyed"]


_TRUST_PROBE = textwrap.dedent(
    """
    import asyncio, sys
    from azure.identity import ManagedIdentityCredential
    from azure.identity.aio import ManagedIdentityCredential as AsyncCredential
    from azure.storage.queue import QueueClient
    from azure.storage.queue.aio import QueueClient as AsyncQueueClient

    url, name = sys.argv[1], sys.argv[2]

    def sync() -> str:
        try:
            with QueueClient(url, name + "s", credential=ManagedIdentityCredential(),
                             retry_total=0) as queue:
                queue.create_queue()
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    async def run_async() -> str:
        try:
            async with AsyncCredential() as credential, AsyncQueueClient(
                url, name + "a", credential=credential, retry_total=0
            ) as queue:
                await queue.create_queue()
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    print(sync(), asyncio.run(run_async()))
    """
)


@pytest.mark.parametrize(
    ("variables", "requests_transport", "aiohttp_transport"),
    [
        (("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"), "ok", "ok"),
        (("SSL_CERT_FILE",), "ServiceRequestError", "ok"),
        (("REQUESTS_CA_BUNDLE",), "ok", "ServiceRequestError"),
    ],
)
def test_which_environment_variables_make_each_transport_trust_the_ca(
    azurite_oauth: AzuriteChild,
    identity_service: RunningIdentity,
    variables: tuple[str, ...],
    requests_transport: str,
    aiohttp_transport: str,
):
    """Without connection_verify: requests reads REQUESTS_CA_BUNDLE, aiohttp SSL_CERT_FILE."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    env.update(identity_service.endpoint.environment())
    env.update(dict.fromkeys(variables, ca(azurite_oauth)))
    result = subprocess.run(
        [sys.executable, "-c", _TRUST_PROBE, azurite_oauth.queue_url, f"t{uuid.uuid4().hex[:8]}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [requests_transport, aiohttp_transport], result.stderr[-2000:]


def test_a_restarted_service_comes_back_over_https(tmp_path: Path, identity_service):
    https = AzuriteHttps.from_tls(ensure_tls(tmp_path))
    storage = start(
        tmp_path / "run", tmp_path / "data", queue_port=0, table_port=0, blob_port=0, https=https
    )
    try:
        assert storage.blob is not None
        stop_children([storage.blob, storage.queue])
        storage = restart_service(storage, "blob", tmp_path / "run")
        storage = restart_service(storage, "queue", tmp_path / "run")
        assert storage.blob is not None
        for child in (storage.blob, storage.queue):
            assert json.loads(child.ready_file.read_text())["url"].startswith("https://")
            assert child.process.poll() is None
        token = identity_service.issuer().issue(STORAGE_AUDIENCE).access_token
        response = httpx.get(
            f"{storage.blob_url}?comp=list",
            headers={"Authorization": f"Bearer {token}", "x-ms-version": API_VERSION},
            verify=ssl.create_default_context(cafile=https.ca_cert),
        )
        assert response.status_code == 200, response.text
    finally:
        stop_children(storage.children)
