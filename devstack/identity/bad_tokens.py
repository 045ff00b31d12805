"""Tokens a resource must refuse, each wrong in exactly one way, for tests.

Everything else about them is what the real issuer would sign, so a refusal can only be for
the one thing that is wrong.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from .tokens import TokenIssuer, generate_signing_key

LONG_AGO = timedelta(hours=2)


class BadTokens:
    """Made from the issuer whose tokens the resource trusts."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self._issuer = issuer

    @cached_property
    def _stranger(self) -> TokenIssuer:
        return TokenIssuer(
            generate_signing_key(), tenant_id=self._issuer.tenant_id, clock=self._issuer.now
        )

    def signed_by_another_key(self, audience: str) -> str:
        return self._stranger.issue(audience).access_token

    def for_another_audience(self, audience: str = "https://management.azure.com") -> str:
        return self._issuer.issue(audience).access_token

    def expired(self, audience: str) -> str:
        """Issued two hours ago for one hour."""
        now = self._issuer.now() - LONG_AGO.total_seconds()
        return self._issuer.issue(audience, now=now).access_token

    def not_yet_valid(self, audience: str) -> str:
        now = self._issuer.now() + LONG_AGO.total_seconds()
        return self._issuer.issue(audience, now=now).access_token

    def from_another_issuer(self, audience: str) -> str:
        """Signed with the right key, but claiming an issuer that is not Entra ID."""
        impostor = TokenIssuer(
            self._issuer.signing_key, issuer="https://login.example.com/", clock=self._issuer.now
        )
        return impostor.issue(audience).access_token
