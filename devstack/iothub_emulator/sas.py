"""Authorization header checks: service SAS tokens signed with a policy key, or bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from .errors import unauthorized
from .policies import ALL_RIGHTS, Policy, Right

_SAS_PREFIX = "sharedaccesssignature "
_BEARER_PREFIX = "bearer "


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


class Authenticator:
    """Checks every request of one hub; raises 401 IotHubUnauthorizedAccess on any failure."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        resources: Collection[str],
        bearer_tokens: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policies = dict(policies)
        self._resources = tuple(resource.lower() for resource in resources)
        self._bearer_tokens = tuple(bearer_tokens)
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
        candidate = token.encode("utf-8")
        for known in self._bearer_tokens:
            if hmac.compare_digest(candidate, known.encode("utf-8")):
                return Principal("bearer", ALL_RIGHTS)
        raise unauthorized("the bearer token is not valid for this hub")

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
