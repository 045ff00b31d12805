"""Entra-shaped tokens: what the identity stand-in signs and what the emulators accept."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from devstack.identity import (
    ISSUER,
    SYSTEM_ASSIGNED_ID,
    TENANT_ID,
    TokenIssuer,
    TokenRejected,
    TokenVerifier,
    ensure_identity_files,
    load_issuer,
    looks_like_jwt,
    verify_token,
)
from devstack.identity.bad_tokens import BadTokens
from devstack.identity.tokens import generate_signing_key, jwks, key_id

AUDIENCE = "https://iothubs.azure.net"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer(generate_signing_key(), clock=lambda: NOW)


@pytest.fixture(scope="module")
def verifier(issuer: TokenIssuer) -> TokenVerifier:
    return TokenVerifier(
        issuer.public_key_pem(), audiences=[AUDIENCE, AUDIENCE + "/"], clock=lambda: NOW
    )


def rejection(verifier: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(token)
    assert not token or token not in str(refused.value)
    return refused.value


def test_an_issued_token_carries_entra_claims(issuer, verifier):
    issued = issuer.issue(AUDIENCE)
    claims = verifier.verify(issued.access_token)
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER == f"https://sts.windows.net/{TENANT_ID}/"
    assert claims["tid"] == TENANT_ID
    assert claims["sub"] == claims["oid"] == claims["appid"] == SYSTEM_ASSIGNED_ID
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 3600)
    assert issued.expires_on == claims["exp"]
    assert issued.client_id == SYSTEM_ASSIGNED_ID
    assert issued.access_token not in repr(issued)


def test_a_client_id_and_a_lifetime_are_honoured(issuer, verifier):
    issued = issuer.issue(AUDIENCE + "/", client_id="cid-1", lifetime=timedelta(minutes=5))
    claims = verifier.verify(issued.access_token)
    assert claims["oid"] == claims["appid"] == claims["sub"] == "cid-1"
    assert claims["exp"] - claims["iat"] == 300


def test_each_wrong_thing_is_named(issuer, verifier):
    bad = BadTokens(issuer)
    cases = {
        "signature": bad.signed_by_another_key(AUDIENCE),
        "audience": bad.for_another_audience("https://storage.azure.com"),
        "expired": bad.expired(AUDIENCE),
        "not-yet-valid": bad.not_yet_valid(AUDIENCE),
        "issuer": bad.from_another_issuer(AUDIENCE),
    }
    for problem, token in cases.items():
        assert rejection(verifier, token).problem == problem
    audience = rejection(verifier, cases["audience"])
    assert "https://storage.azure.com" in str(audience)
    assert AUDIENCE in str(audience)


def test_expiry_is_checked_against_the_clock(issuer, verifier):
    token = issuer.issue(AUDIENCE, lifetime=timedelta(seconds=10)).access_token
    assert verifier.verify(token, now=NOW + 10)["aud"] == AUDIENCE
    assert rejection_at(verifier, token, NOW + 11).problem == "expired"
    assert rejection_at(verifier, token, NOW - 1).problem == "not-yet-valid"


def rejection_at(verifier: TokenVerifier, token: str, now: float) -> TokenRejected:
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(token, now=now)
    return refused.value


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_unsigned_and_symmetric_tokens_are_refused(issuer, verifier):
    claims = {"aud": AUDIENCE, "iss": ISSUER, "exp": NOW + 60, "nbf": NOW, "iat": NOW}
    unsigned = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."
    assert rejection(verifier, unsigned).problem in {"signature", "malformed"}
    # Algorithm confusion: HMAC keyed with the public key's PEM must not pass.
    confused = jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    assert rejection(verifier, confused).problem == "signature"


@pytest.mark.parametrize("value", ["", "not-a-jwt", "a.b.c", "x" * 20_000, "eyJ.eyJ.sig"])
def test_malformed_values_are_refused(verifier, value):
    assert rejection(verifier, value).problem in {"malformed", "signature"}


def test_claims_of_the_wrong_type_are_malformed(issuer, verifier):
    token = issuer.issue(AUDIENCE, extra_claims={"exp": "soon"}).access_token
    assert rejection(verifier, token).problem == "malformed"
    listed = issuer.issue(AUDIENCE, extra_claims={"aud": ["other", AUDIENCE]}).access_token
    assert verifier.verify(listed)["aud"] == ["other", AUDIENCE]
    odd = issuer.issue(AUDIENCE, extra_claims={"aud": [{"x": 1}]}).access_token
    assert rejection(verifier, odd).problem == "audience"


def test_verify_token_is_the_one_off_form(issuer):
    token = issuer.issue(AUDIENCE).access_token
    claims = verify_token(token, issuer.public_key_pem(), audiences=[AUDIENCE], now=NOW)
    assert claims["aud"] == AUDIENCE
    with pytest.raises(TokenRejected, match="audience"):
        verify_token(token, issuer.public_key_pem(), audiences=["api://assets"], now=NOW)


def test_looks_like_jwt_tells_tokens_from_api_keys(issuer):
    assert looks_like_jwt(issuer.issue(AUDIENCE).access_token)
    for key in ("devstack-asset-key", "a.b.c", "key.with.dots", "", "eyJhbGciOiJIUzI1NiJ9"):
        assert not looks_like_jwt(key)


def test_the_jwks_names_the_signing_key(issuer):
    token = issuer.issue(AUDIENCE).access_token
    (jwk,) = jwks(issuer.public_key)["keys"]
    assert jwk["kid"] == key_id(issuer.public_key) == jwt.get_unverified_header(token)["kid"]
    decoded = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert decoded["aud"] == AUDIENCE


def test_identity_files_are_made_once_and_kept_private(tmp_path: Path):
    files = ensure_identity_files(tmp_path / "identity")
    assert stat.S_IMODE(os.stat(files.signing_key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.identity_header).st_mode) == 0o600
    key, header = files.signing_key.read_bytes(), files.identity_header.read_bytes()
    files.public_key.unlink()
    again = ensure_identity_files(tmp_path / "identity")
    assert (again.signing_key.read_bytes(), again.identity_header.read_bytes()) == (key, header)
    issuer = load_issuer(tmp_path / "identity")
    assert again.public_key.read_bytes() == issuer.public_key_pem()
    token = issuer.issue(AUDIENCE).access_token
    assert verify_token(token, again.public_key.read_bytes(), audiences=[AUDIENCE])


def test_a_key_file_that_is_not_a_key_is_an_error(tmp_path: Path):
    (tmp_path / "signing-key.pem").write_text("not a key")
    with pytest.raises(ValueError):  # noqa: PT011 - cryptography's own message
        ensure_identity_files(tmp_path)
