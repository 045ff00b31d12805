"""What to tell an operator when storage refuses the app, or no token could be had for it.

Either way the message names the connection's setting and what to check, and never quotes the
SDK's text (it may hold the account URL with a SAS, or the credential chain's details).
"""

from __future__ import annotations

from storage_access.connection import Service, StorageAccount
from storage_access.credentials import TokenUnavailable

_ROLES: dict[Service, str] = {
    "blob": "Storage Blob Data Owner",
    "queue": "Storage Queue Data Contributor",
    "table": "Storage Table Data Contributor",
}
AUTH_STATUSES = frozenset({401, 403})


def is_token_failure(exc: BaseException) -> bool:
    """The account's credential could not produce a token: nothing was sent to storage."""
    return isinstance(exc, TokenUnavailable)


def token_failure(account: StorageAccount, exc: BaseException) -> str:
    """A credential that gave no token, e.g. no managed identity or a wrong client id."""
    client_id = f"{account.setting}__clientId"
    why = exc.message if isinstance(exc, TokenUnavailable) else type(exc).__name__
    return (
        f"no Entra ID token for {account.setting} ({why}): is the app's "
        f"managed identity enabled, and {client_id} (if set) the client id of one assigned to it?"
    )


def refusal_hint(account: StorageAccount, service: Service) -> str:
    """Appended to a 401 or 403 from the service: which setting to check, and for what."""
    if account.identity_based:
        return (
            f"{account.setting} is identity-based: its identity needs the {_ROLES[service]} "
            "role on the account"
        )
    return f"check the account name and key in {account.setting}"
