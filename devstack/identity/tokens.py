"""Entra ID-shaped access tokens: issued signed RS256, verified as a resource verifies them.

Pure logic: keys, clocks and identities come in as arguments; nothing here touches files or
the network, so the identity service, the emulators and the tests all share it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT_ID = "de75ac00-0000-4000-a000-000000000000"
"""The devstack's tenant: fixed, so that tokens and configuration survive restarts."""
SYSTEM_ASSIGNED_ID = "de75ac00-0000-4000-a000-000000000001"
"""The identity a token is for when the caller names no user-assigned identity."""
ENTRA_ISSUER_PREFIX = "https://sts.windows.net/"
"""Entra ID's v1 issuer, before the tenant: the only prefix Azurite's OAuth accepts."""
ISSUER = f"{ENTRA_ISSUER_PREFIX}{TENANT_ID}/"
DEFAULT_LIFETIME = timedelta(hours=1)
ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 16_384
"""Longer bearer values are refused unparsed; Entra's own tokens stay well under 4 KB."""

_BASE64URL = r"[A-Za-z0-9_-]+"
_JWT_SHAPE = re.compile(rf"{_BASE64URL}\.{_BASE64URL}\.{_BASE64URL}")


class TokenRejected(ValueError):
    """A token a resource must refuse. `problem` is one word (signature, audience, expired,
    not-yet-valid, issuer, malformed); the message says more, and never quotes the token."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and what the managed-identity endpoint answers about it."""

    access_token: str
    expires_on: int
    audience: str
    client_id: str

    def __repr__(self) -> str:
        return f"IssuedToken(audience={self.audience!r}, client_id={self.client_id!r}, ...)"


def generate_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Raise ValueError unless `pem` holds an unencrypted RSA private key."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key is not an RSA key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Raise ValueError unless `pem` holds an RSA public key (SubjectPublicKeyInfo PEM)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the token issuer key is not an RSA public key")
    return key


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes(max(1, math.ceil(value.bit_length() / 8)), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def key_id(key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of the key: stable across restarts, names it in JWKS."""
    numbers = key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwks(key: rsa.RSAPublicKey) -> dict[str, Any]:
    """The JSON Web Key Set a resource would fetch to verify tokens."""
    numbers = key.public_numbers()
    return {
        "keys": [
            {
                "kty": "RSA",
                "use": "sig",
                "alg": ALGORITHM,
                "kid": key_id(key),
                "n": _b64url_uint(numbers.n),
                "e": _b64url_uint(numbers.e),
            }
        ]
    }


def looks_like_jwt(value: str) -> bool:
    """Three base64url parts whose first is a JSON header naming an algorithm.

    Tells a JWT from an API key sent the same way (`Authorization: Bearer ...`).
    """
    if len(value) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.fullmatch(value):
        return False
    head = value.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


class TokenIssuer:
    """Signs access tokens as Entra ID would for a managed identity of the devstack tenant."""

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        tenant_id: str = TENANT_ID,
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self.tenant_id = tenant_id
        self.issuer = issuer if issuer is not None else f"{ENTRA_ISSUER_PREFIX}{tenant_id}/"
        self._clock = clock

    @property
    def signing_key(self) -> rsa.RSAPrivateKey:
        return self._key

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def now(self) -> float:
        return self._clock()

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key)

    def issue(
        self,
        audience: str,
        *,
        client_id: str | None = None,
        lifetime: timedelta = DEFAULT_LIFETIME,
        now: float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """A token for `audience` (a resource, as azure-identity sends it: no /.default).

        The identity is `client_id` (a user-assigned identity) or the system-assigned one.
        `now` and `extra_claims` let tests make tokens that are expired or odd.
        """
        identity = client_id or SYSTEM_ASSIGNED_ID
        issued_at = int(self.now() if now is None else now)
        expires_on = issued_at + int(lifetime.total_seconds())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires_on,
            "sub": identity,
            "oid": identity,
            "appid": identity,
            "appidacr": "2",
            "idtyp": "app",
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        claims.update(extra_claims or {})
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})
        return IssuedToken(
            access_token=token, expires_on=expires_on, audience=audience, client_id=identity
        )


class TokenVerifier:
    """Checks bearer tokens as one resource: signature, lifetime, issuer, audience."""

    def __init__(
        self,
        public_key: bytes | rsa.RSAPublicKey,
        *,
        audiences: Collection[str],
        issuer_prefix: str = ENTRA_ISSUER_PREFIX,
        leeway_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not audiences:
            raise ValueError("a verifier needs at least one audience")
        self._key = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
        self.audiences = tuple(audiences)
        self._issuer_prefix = issuer_prefix
        self._leeway = leeway_seconds
        self._clock = clock

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """The token's claims; TokenRejected naming the first thing wrong otherwise."""
        claims = self._verified_claims(token)
        moment = self._clock() if now is None else now
        expires = _number(claims, "exp")
        not_before = _number(claims, "nbf")
        if moment > expires + self._leeway:
            raise TokenRejected("expired", f"the token expired {int(moment - expires)} s ago")
        if not_before - self._leeway > moment:
            raise TokenRejected("not-yet-valid", "the token is not valid yet (nbf)")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith(self._issuer_prefix):
            raise TokenRejected(
                "issuer", f"the token's issuer is not an Entra ID issuer ({self._issuer_prefix})"
            )
        audience = claims.get("aud")
        presented = [audience] if isinstance(audience, str) else audience
        if not isinstance(presented, list) or not any(a in self.audiences for a in presented):
            shown = _quoted(audience)
            raise TokenRejected(
                "audience",
                f"the token's audience {shown} is not {' or '.join(self.audiences)}",
            )
        return claims

    def _verified_claims(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("malformed", "the token is too long to be a JWT")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={
                    "verify_signature": True,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(
                "signature", "the token's signature does not verify with the issuer's key"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise TokenRejected("signature", f"the token is not signed {ALGORITHM}") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("malformed", "the bearer value is not a well-formed JWT") from None
        return claims


def verify_token(
    token: str,
    public_key: bytes | rsa.RSAPublicKey,
    *,
    audiences: Collection[str],
    issuer_prefix: str = ENTRA_ISSUER_PREFIX,
    now: float | None = None,
) -> dict[str, Any]:
    """One-off TokenVerifier(...).verify(token): the claims, or TokenRejected."""
    verifier = TokenVerifier(public_key, audiences=audiences, issuer_prefix=issuer_prefix)
    return verifier.verify(token, now=now)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected("malformed", f"the token has no numeric {name} claim")
    return float(value)


def _quoted(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
