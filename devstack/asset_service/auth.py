"""Who may call: API keys (`x-api-key` or `Authorization: Bearer <key>`; read-only keys may only
read) and, when a token verifier is configured, Entra ID bearer tokens (JWTs) for the service's
audience, which may read and write."""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass

from starlette.datastructures import Headers

from devstack.identity.tokens import TokenRejected, TokenVerifier, looks_like_jwt

from .problems import Problem

DEFAULT_API_KEY = "devstack-asset-key"
API_KEY_ENV = "DEVSTACK_ASSET_API_KEY"
DEFAULT_TOKEN_AUDIENCE = "api://devstack-assets"
_INVALID_TOKEN = 'Bearer error="invalid_token"'


def presented_key(headers: Headers) -> str | None:
    """The key from x-api-key, else from a Bearer authorization; None when neither is sent."""
    key = headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _known(key: str, keys: Collection[str]) -> bool:
    # Compare against every key, in constant time each, so timing reveals nothing.
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


@dataclass(frozen=True)
class KeyRing:
    write_keys: frozenset[str]
    read_only_keys: frozenset[str] = frozenset()
    tokens: TokenVerifier | None = None
    """Verifies Entra ID tokens; None: a JWT is refused like any unknown key."""

    def authorize(self, headers: Headers, *, write: bool) -> None:
        """Raise 401 for a missing or unknown key or a bad token, 403 for a read-only key on a
        write. A JWT in Authorization is a token (API keys never look like one)."""
        key = presented_key(headers)
        if key is not None and headers.get("x-api-key") is None and looks_like_jwt(key):
            self._verify_token(key)
            return
        if key is None or not (_known(key, self.write_keys) or _known(key, self.read_only_keys)):
            detail = (
                "an API key is required: send x-api-key or Authorization: Bearer"
                if key is None
                else "the API key is not valid"
            )
            raise Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})
        if write and not _known(key, self.write_keys):
            raise Problem(403, "this API key is read-only; writes need a read-write key")

    def _verify_token(self, token: str) -> None:
        if self.tokens is None:
            raise Problem(
                401,
                "this service takes API keys only, not Entra ID tokens "
                "(start it with --token-issuer-key to accept them)",
                headers={"WWW-Authenticate": _INVALID_TOKEN},
            )
        try:
            self.tokens.verify(token)
        except TokenRejected as exc:
            raise Problem(
                401,
                f"the bearer token is not valid: {exc.message}",
                headers={"WWW-Authenticate": _INVALID_TOKEN},
                extensions={"reason": exc.problem},
            ) from None
