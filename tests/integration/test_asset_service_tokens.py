"""The reference asset service accepting Entra ID tokens beside its API keys, over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.identity import ManagedIdentityCredential

from devstack.identity.bad_tokens import BadTokens
from devstack.processes import Child, stop_children
from tests.integration.asset_service_fixtures import (
    READ_ONLY_KEY,
    WRITE_KEY,
    start_asset_service,
)
from tests.integration.identity_fixtures import (
    RunningIdentity,
    identity_service,
    managed_identity,
)

__all__ = ["identity_service", "managed_identity"]

AUDIENCE = "api://devstack-assets"


@pytest.fixture(scope="module")
def assets(
    tmp_path_factory: pytest.TempPathFactory, identity_service: RunningIdentity
) -> Iterator[Child]:
    base = tmp_path_factory.mktemp("asset-tokens")
    child = start_asset_service(
        base / "run",
        base / "data",
        token_issuer_key=identity_service.public_key_file,
        token_audience=AUDIENCE,
    )
    try:
        yield child
    finally:
        stop_children([child])


def new_asset() -> tuple[str, dict[str, Any]]:
    tag = uuid.uuid4().hex[:10]
    return f"T-{tag}", {
        "serialNumber": f"SN-{tag}",
        "assetType": "temperature-sensor",
        "location": f"test/{tag}/line-1",
        "attributes": {"manufacturer": "Contoso", "model": "T-1"},
    }


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response, *words: str) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem: dict[str, Any] = response.json()
    for word in words:
        assert word in problem["detail"], problem
    return problem


def test_a_managed_identity_token_may_write(assets: Child, managed_identity: RunningIdentity):
    token = ManagedIdentityCredential().get_token(f"{AUDIENCE}/.default").token
    asset_id, body = new_asset()
    with httpx.Client(base_url=assets.url, headers=bearer(token), timeout=10) as client:
        created = client.put(f"/assets/{asset_id}", json=body)
        assert created.status_code == 201, created.text
        assert client.get(f"/assets/{asset_id}").json()["serialNumber"] == body["serialNumber"]
        assert client.get("/assets/AST-1001/history").status_code == 200
    assert assets.info["tokenAudience"] == AUDIENCE


def test_bad_tokens_are_401_naming_what_is_wrong(assets: Child, identity_service: RunningIdentity):
    bad = BadTokens(identity_service.issuer())
    cases = {
        "audience": bad.for_another_audience("https://storage.azure.com"),
        "expired": bad.expired(AUDIENCE),
        "signature": bad.signed_by_another_key(AUDIENCE),
        "issuer": bad.from_another_issuer(AUDIENCE),
    }
    asset_id, body = new_asset()
    with httpx.Client(base_url=assets.url, timeout=10) as client:
        for word, token in cases.items():
            for response in (
                client.get("/assets/AST-1001", headers=bearer(token)),
                client.put(f"/assets/{asset_id}", json=body, headers=bearer(token)),
            ):
                problem = assert_refused(response, word)
                assert problem["reason"] == word
                assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
                assert token not in response.text
                assert token.split(".")[2] not in response.text
        assert (
            client.get(f"/assets/{asset_id}", headers={"x-api-key": WRITE_KEY}).status_code == 404
        )
    audience = assert_refused(
        httpx.get(f"{assets.url}/assets", headers=bearer(cases["audience"]), timeout=10)
    )
    assert AUDIENCE in audience["detail"]


def test_api_keys_keep_working_beside_tokens(assets: Child):
    asset_id, body = new_asset()
    with httpx.Client(base_url=assets.url, timeout=10) as client:
        assert (
            client.put(f"/assets/{asset_id}", json=body, headers=bearer(WRITE_KEY)).status_code
            == 201
        )
        assert (
            client.get(f"/assets/{asset_id}", headers={"x-api-key": WRITE_KEY}).status_code == 200
        )
        reader = {"x-api-key": READ_ONLY_KEY}
        assert client.get(f"/assets/{asset_id}", headers=reader).status_code == 200
        assert client.put(f"/assets/{asset_id}", json=body, headers=reader).status_code == 403
        wrong = client.get("/assets", headers=bearer("guess-the-key-123"))
        assert_refused(wrong, "API key")
        assert wrong.headers["www-authenticate"] == "Bearer"


def test_a_service_without_an_issuer_key_refuses_tokens(
    tmp_path, identity_service: RunningIdentity
):
    child = start_asset_service(tmp_path / "run", tmp_path / "data")
    try:
        token = identity_service.issuer().issue(AUDIENCE).access_token
        response = httpx.get(f"{child.url}/assets", headers=bearer(token), timeout=10)
        assert_refused(response, "--token-issuer-key")
        assert token not in response.text
        keyed = httpx.get(f"{child.url}/assets", headers=bearer(WRITE_KEY), timeout=10)
        assert keyed.status_code == 200
    finally:
        stop_children([child])
