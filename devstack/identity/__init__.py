"""Entra ID stand-in: the App Service managed-identity endpoint that azure-identity calls, and
the RS256 tokens it issues, which the devstack's emulators verify with its public key.

Run it with `python -m devstack.identity`; read its ready file with
IdentityEndpoint.from_ready_info(); verify tokens with tokens.TokenVerifier.
"""

from .endpoint import IdentityEndpoint, ready_info
from .keys import PUBLIC_KEY_FILE, SIGNING_KEY_FILE, ensure_identity_files, load_issuer
from .tokens import (
    ENTRA_ISSUER_PREFIX,
    ISSUER,
    SYSTEM_ASSIGNED_ID,
    TENANT_ID,
    IssuedToken,
    TokenIssuer,
    TokenRejected,
    TokenVerifier,
    looks_like_jwt,
    verify_token,
)

__all__ = [
    "ENTRA_ISSUER_PREFIX",
    "ISSUER",
    "PUBLIC_KEY_FILE",
    "SIGNING_KEY_FILE",
    "SYSTEM_ASSIGNED_ID",
    "TENANT_ID",
    "IdentityEndpoint",
    "IssuedToken",
    "TokenIssuer",
    "TokenRejected",
    "TokenVerifier",
    "ensure_identity_files",
    "load_issuer",
    "looks_like_jwt",
    "ready_info",
    "verify_token",
]
