"""Authorization header checks: service SAS tokens signed with a policy key, or Entra ID
bearer tokens signed by the devstack's identity stand-in (devstack.identity)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from devstack.identity.tokens import TokenRejected, TokenVerifier

from .errors import unauthorized
from .policies import ALL_RIGHTS, Policy, Right

_SAS_PREFIX = "sharedaccesssignature "
_BEARER_PREFIX = "bearer "
IOTHUB_AUDIENCES = ("https://iothubs.azure.net", "https://iothubs.azure.net/")
"""IoT Hub's service audience: azure-iot-hub asks for scope https://iothubs.azure.net/.default."""


@dataclass(frozen=True)
class Principal:
    """Who made a request and what it may do."""

    name: str
    rights: frozenset[Right]


def signature(string_to_sign: str, key: str) -> str:
    """base64(HMAC-SHA256(base64-decoded key, string)): IoT Hub's SAS signature."""
    digest = hmac.new(base64.b64decode(key), string_to_sign.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def parse_sas(token: str) -> dict[str, str]:
    """`sr=..&sig=..&se=..&skn=..` into raw (still URL-encoded) fields."""
    fields: dict[str, str] = {}
    for part in token.split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name or name in fields:
            raise unauthorized("malformed SharedAccessSignature")
        fields[name] = value
    return fields


def entra_verifier(public_key_pem: bytes) -> TokenVerifier:
    """Accepts tokens for IoT Hub signed with the identity stand-in's key."""
    return TokenVerifier(public_key_pem, audiences=IOTHUB_AUDIENCES)


class Authenticator:
    """Checks every request of one hub; raises 401 IotHubUnauthorizedAccess on any failure."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        resources: Collection[str],
        token_verifier: TokenVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policies = dict(policies)
        self._resources = tuple(resource.lower() for resource in resources)
        self._tokens = token_verifier
        self._clock = clock

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise unauthorized("the Authorization header is missing")
        lowered = authorization.lower()
        if lowered.startswith(_BEARER_PREFIX):
            return self._bearer(authorization[len(_BEARER_PREFIX) :].strip())
        if lowered.startswith(_SAS_PREFIX):
            return self._sas(authorization[len(_SAS_PREFIX) :].strip())
        raise unauthorized("Authorization must be a SharedAccessSignature or a Bearer token")

    def _bearer(self, token: str) -> Principal:
        if self._tokens is None:
            raise unauthorized(
                "this hub takes no bearer tokens (start the emulator with --token-issuer-key)"
            )
        try:
            claims = self._tokens.verify(token, now=self._clock())
        except TokenRejected as exc:
            raise unauthorized(f"the bearer token is not valid: {exc.message}") from None
        return Principal(f"entra:{claims.get('oid', 'unknown')}", ALL_RIGHTS)

    def _sas(self, token: str) -> Principal:
        fields = parse_sas(token)
        missing = [name for name in ("sr", "sig", "se", "skn") if name not in fields]
        if missing:
            raise unauthorized(f"the SharedAccessSignature lacks {', '.join(missing)}")
        policy = self._policies.get(unquote(fields["skn"]))
        if policy is None:
            raise unauthorized(f"no shared access policy named {unquote(fields['skn'])!r}")
        try:
            expiry = int(fields["se"])
        except ValueError:
            raise unauthorized("se (expiry) must be whole seconds since 1970") from None
        if expiry <= self._clock():
            raise unauthorized("the SharedAccessSignature has expired")
        resource = unquote_plus(fields["sr"]).lower()
        if not any(resource == r or resource.startswith(r + "/") for r in self._resources):
            raise unauthorized(f"the token's resource {resource!r} is not this hub")
        # The signer signs sr exactly as it appears in the token (URL-encoded).
        string_to_sign = f"{fields['sr']}\n{fields['se']}"
        presented = unquote(fields["sig"]).encode("ascii", "replace")
        for key in (policy.primary_key, policy.secondary_key):
            try:
                expected = signature(string_to_sign, key).encode("ascii")
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(presented, expected):
                return Principal(policy.name, policy.rights)
        raise unauthorized(f"the signature does not match a key of policy {policy.name}")
