"""The Entra ID stand-in as a real process, asked for tokens by the real azure-identity."""

from __future__ import annotations

import json
import os
import stat
import time
from typing import Any

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from devstack.identity import ISSUER, SYSTEM_ASSIGNED_ID, TENANT_ID, verify_token
from devstack.processes import stop_children
from tests.integration.identity_fixtures import (
    USER_ASSIGNED_ID,
    RunningIdentity,
    identity_service,
    managed_identity,
    managed_identity_env,
    start_identity_service,
)

__all__ = ["identity_service", "managed_identity"]

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE = "https://storage.azure.com"


def claims_of(identity: RunningIdentity, token: str, audience: str = STORAGE) -> dict[str, Any]:
    return verify_token(token, identity.public_key(), audiences=[audience])


def test_managed_identity_credential_gets_a_system_assigned_token(managed_identity):
    before = int(time.time())
    token = ManagedIdentityCredential().get_token(STORAGE_SCOPE)
    claims = claims_of(managed_identity, token.token)
    assert claims["aud"] == STORAGE
    assert claims["iss"] == ISSUER
    assert claims["iss"].startswith("https://sts.windows.net/")
    assert claims["tid"] == TENANT_ID
    assert claims["sub"] == claims["oid"] == claims["appid"] == SYSTEM_ASSIGNED_ID
    assert claims["nbf"] == claims["iat"] >= before
    assert claims["exp"] - claims["iat"] == 3600
    assert token.expires_on == claims["exp"]
    assert jwt.get_unverified_header(token.token)["alg"] == "RS256"


def test_a_user_assigned_client_id_is_the_tokens_identity(managed_identity):
    token = ManagedIdentityCredential(client_id=USER_ASSIGNED_ID).get_token(STORAGE_SCOPE)
    claims = claims_of(managed_identity, token.token)
    assert claims["sub"] == claims["oid"] == claims["appid"] == USER_ASSIGNED_ID


def test_default_azure_credential_takes_the_managed_identity(managed_identity):
    credential = DefaultAzureCredential(managed_identity_client_id=USER_ASSIGNED_ID)
    token = credential.get_token("https://iothubs.azure.net/.default")
    claims = claims_of(managed_identity, token.token, "https://iothubs.azure.net")
    assert claims["oid"] == USER_ASSIGNED_ID


async def test_the_async_credential_over_aiohttp_gets_a_token(managed_identity):
    async with AsyncManagedIdentityCredential() as credential:
        token = await credential.get_token("api://devstack-assets/.default")
    claims = claims_of(managed_identity, token.token, "api://devstack-assets")
    assert claims["oid"] == SYSTEM_ASSIGNED_ID


def test_a_wrong_identity_header_is_refused_with_a_clear_error(identity_service, monkeypatch):
    with managed_identity_env(identity_service):
        monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
        with pytest.raises(CredentialUnavailableError) as refused:
            ManagedIdentityCredential().get_token(STORAGE_SCOPE)
    message = str(refused.value)
    assert "401" in message
    assert "X-IDENTITY-HEADER" in message
    assert identity_service.endpoint.header not in message


async def test_the_async_credential_reports_a_wrong_header_too(identity_service, monkeypatch):
    with managed_identity_env(identity_service):
        monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
        async with AsyncManagedIdentityCredential() as credential:
            with pytest.raises(ClientAuthenticationError, match="X-IDENTITY-HEADER"):
                await credential.get_token(STORAGE_SCOPE)


def token_request(identity: RunningIdentity, *, header: str | None = "", **params: str) -> Any:
    headers = {}
    if header is not None:
        headers["X-IDENTITY-HEADER"] = header or identity.endpoint.header
    query = {"api-version": "2019-08-01", **params}
    return httpx.get(identity.endpoint.endpoint, params=query, headers=headers, timeout=10)


def test_the_endpoint_answers_as_app_service_does(identity_service):
    ok = token_request(identity_service, resource=STORAGE)
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert (body["resource"], body["token_type"]) == (STORAGE, "Bearer")
    assert body["client_id"] == SYSTEM_ASSIGNED_ID
    assert body["expires_on"] == str(claims_of(identity_service, body["access_token"])["exp"])
    assert ok.headers["cache-control"] == "no-store"

    refusals = {
        "missing header": (token_request(identity_service, header=None, resource=STORAGE), 401),
        "wrong header": (token_request(identity_service, header="nope", resource=STORAGE), 401),
        "no resource": (token_request(identity_service), 400),
        "empty resource": (token_request(identity_service, resource=""), 400),
        "two identities": (
            token_request(
                identity_service,
                resource=STORAGE,
                client_id=USER_ASSIGNED_ID,
                object_id=USER_ASSIGNED_ID,
            ),
            400,
        ),
        "client id not a GUID": (
            token_request(identity_service, resource=STORAGE, client_id="x"),
            400,
        ),
    }
    for name, (response, status) in refusals.items():
        assert response.status_code == status, name
        assert response.json()["statusCode"] == status, name
        assert response.json()["message"], name
    old_version = httpx.get(
        identity_service.endpoint.endpoint,
        params={"api-version": "2017-09-01", "resource": STORAGE},
        headers={"X-IDENTITY-HEADER": identity_service.endpoint.header},
    )
    assert old_version.status_code == 400


def test_an_object_id_names_the_identity_as_a_client_id_does(identity_service):
    for name in ("object_id", "principal_id"):
        body = token_request(identity_service, resource=STORAGE, **{name: USER_ASSIGNED_ID}).json()
        assert body["client_id"] == USER_ASSIGNED_ID, name
        assert claims_of(identity_service, body["access_token"])["oid"] == USER_ASSIGNED_ID


def test_a_resource_id_stands_for_a_stable_identity(identity_service):
    resource_id = (
        "/subscriptions/0000/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/onboarding"
    )
    first = token_request(identity_service, resource=STORAGE, mi_res_id=resource_id).json()
    again = token_request(identity_service, resource=STORAGE, mi_res_id=resource_id).json()
    assert first["client_id"] == again["client_id"] != SYSTEM_ASSIGNED_ID
    assert claims_of(identity_service, first["access_token"])["oid"] == first["client_id"]


def test_the_jwks_and_the_public_key_file_verify_its_tokens(identity_service):
    token = token_request(identity_service, resource=STORAGE).json()["access_token"]
    keys = httpx.get(identity_service.child.info["jwksUri"]).json()
    (jwk,) = keys["keys"]
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    signing_key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, signing_key, algorithms=["RS256"], audience=STORAGE)
    assert claims["iss"] == ISSUER
    assert claims_of(identity_service, token) == claims


def test_a_restart_keeps_the_key_and_the_header(tmp_path):
    data_dir = tmp_path / "data"
    first = start_identity_service(tmp_path / "run", data_dir)
    try:
        token = token_request(first, resource=STORAGE).json()["access_token"]
        header = first.endpoint.header
    finally:
        stop_children([first.child])
    mode = stat.S_IMODE(os.stat(data_dir / "signing-key.pem").st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(data_dir / "identity-header").st_mode) == 0o600
    again = start_identity_service(
        tmp_path / "run", data_dir, extra_args=("--token-lifetime-seconds", "120")
    )
    try:
        assert again.endpoint.header == header
        assert claims_of(again, token)["aud"] == STORAGE
        fresh = token_request(again, resource=STORAGE).json()
        claims = claims_of(again, fresh["access_token"])
        assert claims["exp"] - claims["iat"] == 120
        assert json.loads(again.child.ready_file.read_text())["tokenLifetimeSeconds"] == 120
    finally:
        stop_children([again.child])
