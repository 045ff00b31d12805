"""Query continuation tokens: opaque to callers, bound to the query they continue.

A page ends after a device id; the next page starts after it, in device id order, so a page
never repeats or skips a twin that existed throughout, whatever changed meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from .errors import IotHubError


def _fingerprint(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


def continuation_token(query: str, last_device_id: str) -> str:
    payload = json.dumps({"q": _fingerprint(query), "after": last_device_id})
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii")


def resume_after(token: str, query: str) -> str:
    """The device id a continuation token resumes after; 400 if it is not one of this query's."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        payload = None
    if (
        not isinstance(payload, dict)
        or payload.get("q") != _fingerprint(query)
        or not isinstance(payload.get("after"), str)
    ):
        raise IotHubError(400, "ArgumentInvalid", "the continuation token is not this query's")
    return str(payload["after"])
