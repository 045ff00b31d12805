"""Translate between Starlette requests/responses and azure.functions HTTP types."""

from __future__ import annotations

from typing import Any

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response

from devstack.function_host.errors import BodyTooLarge

_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


class UnsupportedReturn(TypeError):
    """An HTTP function returned something the http output binding cannot carry."""


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing (BodyTooLarge) as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def to_function_request(
    request: Request, body: bytes, route_params: dict[str, str]
) -> func.HttpRequest:
    """An HttpRequest as the worker builds it; repeated headers are joined with commas."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, value)
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=headers,
        params=params,
        route_params=route_params,
        body=body,
    )


def to_response(value: Any) -> Response:
    """Map the `$return` value like azure.functions.http.HttpResponseConverter does."""
    if isinstance(value, func.HttpResponse):
        headers = [(k, v) for k, v in value.headers.items()]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = str(value.mimetype)
            content_type = (
                f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            )
            headers.append(("content-type", content_type))
        response = Response(content=value.get_body(), status_code=int(value.status_code))
        response.raw_headers.extend(
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() not in _FRAMING_HEADERS
        )
        return response
    if isinstance(value, str | bytes):
        return Response(content=value, status_code=200, media_type="text/plain")
    if value is None:
        return Response(status_code=204)
    raise UnsupportedReturn(
        f"an HTTP function must return func.HttpResponse, str or bytes, not {type(value).__name__}"
    )
