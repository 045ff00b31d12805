"""HTTP routes of the identity stand-in: App Service's managed-identity endpoint, and the keys.

The token endpoint answers what azure-identity (through MSAL's App Service flavour) sends when
IDENTITY_ENDPOINT and IDENTITY_HEADER are set: `GET <endpoint>?api-version=2019-08-01&resource=R`
with optional `client_id`, `mi_res_id` or `object_id` (`principal_id` in App Service's own
docs), and header `X-IDENTITY-HEADER`. Errors are App Service's
`{"statusCode": N, "message": "..."}`, which MSAL quotes in its exception.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .tokens import TokenIssuer, jwks

log = logging.getLogger("devstack.identity")

TOKEN_PATH = "/msi/token"
JWKS_PATH = "/.well-known/jwks.json"
API_VERSION = "2019-08-01"
IDENTITY_HEADER = "x-identity-header"
_IDENTITY_PARAMETERS = ("client_id", "mi_res_id", "object_id", "principal_id")
_RESOURCE_ID_NAMESPACE = uuid.UUID("de75ac00-0000-4000-a000-00000000f00d")


class IdentityError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"statusCode": self.status, "message": self.message},
            status_code=self.status,
            headers={"Cache-Control": "no-store"},
        )


def _guid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise IdentityError(400, f"{name} must be a GUID") from None


def chosen_identity(query: dict[str, str]) -> str | None:
    """The user-assigned identity a request names (None: the system-assigned one).

    A resource id has no GUID of its own here: it stands for a fixed GUID derived from it.
    """
    named = [name for name in _IDENTITY_PARAMETERS if query.get(name)]
    if len(named) > 1:
        raise IdentityError(400, f"name one identity at most, not {' and '.join(named)}")
    if not named:
        return None
    name = named[0]
    value = query[name]
    if name == "mi_res_id":
        if not value.lower().startswith("/subscriptions/"):
            raise IdentityError(400, "mi_res_id must be an ARM resource id (/subscriptions/...)")
        return str(uuid.uuid5(_RESOURCE_ID_NAMESPACE, value.lower()))
    return _guid(value, name)


class IdentityRoutes:
    def __init__(self, issuer: TokenIssuer, *, identity_header: str, lifetime: timedelta) -> None:
        self._issuer = issuer
        self._header = identity_header.encode("utf-8")
        self._lifetime = lifetime

    async def token(self, request: Request) -> Response:
        try:
            return self._token(request)
        except IdentityError as exc:
            log.warning("token request refused (%s): %s", exc.status, exc.message)
            return exc.response()

    def _token(self, request: Request) -> Response:
        presented = request.headers.get(IDENTITY_HEADER)
        if presented is None:
            raise IdentityError(401, "the X-IDENTITY-HEADER header is missing")
        if not hmac.compare_digest(presented.encode("utf-8"), self._header):
            raise IdentityError(401, "the X-IDENTITY-HEADER header is not this endpoint's")
        query = dict(request.query_params)
        version = query.get("api-version")
        if version != API_VERSION:
            raise IdentityError(400, f"api-version must be {API_VERSION}")
        resource = query.get("resource", "").strip()
        if not resource:
            raise IdentityError(400, "the resource query parameter is required")
        issued = self._issuer.issue(
            resource, client_id=chosen_identity(query), lifetime=self._lifetime
        )
        body: dict[str, Any] = {
            "access_token": issued.access_token,
            "expires_on": str(issued.expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": issued.client_id,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(jwks(self._issuer.public_key))

    async def openid_configuration(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": self._issuer.issuer,
                "jwks_uri": f"{base}{JWKS_PATH}",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint": f"{base}{TOKEN_PATH}",
            }
        )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    issuer: TokenIssuer, *, identity_header: str, lifetime: timedelta = timedelta(hours=1)
) -> Starlette:
    if not identity_header:
        raise ValueError("the identity header must not be empty")
    if lifetime <= timedelta(0):
        raise ValueError("the token lifetime must be positive")
    routes = IdentityRoutes(issuer, identity_header=identity_header, lifetime=lifetime)
    return Starlette(
        routes=[
            Route(TOKEN_PATH, routes.token, methods=["GET"]),
            Route(JWKS_PATH, routes.jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", routes.openid_configuration),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
