"""How the app proves itself to the asset API: an API key, or an Entra ID access token.

A token comes from azure-identity (the app's managed identity on Azure) for the API's audience;
azure-identity caches it and renews it before it expires. A credential that cannot produce one
is AssetAccessDenied naming ASSET_API_AUDIENCE and the credential's error class, never its text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from asset_client.errors import AssetAccessDenied

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


class AssetApiAuth(Protocol):
    @property
    def refusal_hint(self) -> str:
        """What to check when the API answers 401 or 403: the setting, never its value."""
        ...

    async def headers(self) -> Mapping[str, str]:
        """The headers that authenticate one request."""
        ...

    async def aclose(self) -> None: ...


class ApiKey:
    def __init__(self, key: str) -> None:
        self._headers = {"x-api-key": key}

    @property
    def refusal_hint(self) -> str:
        return "check ASSET_API_KEY (the key the asset API expects, or its Key Vault reference)"

    async def headers(self) -> Mapping[str, str]:
        return self._headers

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:  # never print the key
        return "ApiKey(***)"


class EntraToken:
    """`Authorization: Bearer` with a token for `<audience>/.default`."""

    def __init__(self, credential: AsyncTokenCredential, audience: str) -> None:
        self._credential = credential
        self._audience = audience
        self._scope = audience.rstrip("/") + "/.default"

    @property
    def refusal_hint(self) -> str:
        return (
            f"check ASSET_API_AUDIENCE {self._audience!r} (the asset API's application ID URI) "
            "and that the app's managed identity is granted access to it"
        )

    async def headers(self) -> Mapping[str, str]:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = await self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            raise AssetAccessDenied(
                f"asset API: no Entra ID token for ASSET_API_AUDIENCE {self._audience!r} "
                f"({type(exc).__name__}; is the app's managed identity set up and granted?)"
            ) from None
        return {"authorization": f"Bearer {token.token}"}

    async def aclose(self) -> None:
        await self._credential.close()
