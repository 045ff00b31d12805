"""Shared access signatures on the service API, checked as DPS checks them.

A token is `SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>&skn=<policy>`, each
value url-encoded.
The signature is HMAC-SHA256, keyed with the base64-decoded policy key, over the url-encoded
resource, a newline and the expiry; `sr` names the service host (lower case) or a path under it,
and grants every request whose resource starts with it at a path-segment boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

OWNER_POLICY = "provisioningserviceowner"
_PREFIX = "SharedAccessSignature "


class SasRejected(Exception):
    """The Authorization header holds no valid token for this request; the message says why."""


@dataclass(frozen=True)
class SasPolicies:
    """The service's shared access policies (name -> base64 key) and its host name."""

    host_name: str
    keys: Mapping[str, str]

    def check(self, header: str | None, path: str, *, now: float | None = None) -> str:
        """The policy name when `header` grants access to `path`, else SasRejected."""
        if not header:
            raise SasRejected("the Authorization header is missing")
        if not header.startswith(_PREFIX):
            raise SasRejected("the Authorization header is not a SharedAccessSignature")
        fields: dict[str, str] = {}
        for name, value in parse_qsl(header[len(_PREFIX) :], keep_blank_values=True):
            if name in fields:
                raise SasRejected(f"the token repeats {name}")
            fields[name] = value
        missing = [name for name in ("sr", "sig", "se", "skn") if not fields.get(name)]
        if missing:
            raise SasRejected(f"the token lacks {', '.join(missing)}")
        key = self.keys.get(fields["skn"])
        if key is None:
            raise SasRejected(f"no shared access policy named {fields['skn']!r}")
        expiry = fields["se"]
        if not (expiry.isascii() and expiry.isdigit()):
            raise SasRejected("the token's expiry (se) is not a number")
        if int(expiry) <= (time.time() if now is None else now):
            raise SasRejected("the token has expired")
        resource = fields["sr"].lower()
        if not _grants(resource, f"{self.host_name.lower()}{path.lower()}"):
            raise SasRejected(f"the token is for {resource!r}, not this service")
        expected = signature(key, fields["sr"], expiry)
        if not hmac.compare_digest(expected, fields["sig"]):
            raise SasRejected("the token's signature does not match the policy's key")
        return fields["skn"]


def signature(key: str, resource: str, expiry: str) -> str:
    """base64(HMAC-SHA256(base64decode(key), urlencode(resource) + "\\n" + expiry))."""
    message = f"{quote(resource, safe='')}\n{expiry}".encode()
    digest = hmac.new(base64.b64decode(key), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _grants(token_resource: str, requested: str) -> bool:
    token_resource = token_resource.rstrip("/")
    return requested == token_resource or requested.startswith(token_resource + "/")
