"""Read a request body as JSON within a size limit, with the problems a client can act on."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from . import problems
from .problems import Problem

MAX_BODY_BYTES = 1024 * 1024
# Past the limit we keep reading (and discarding) up to this much, so the client can see the
# 413 instead of a reset connection; beyond it we stop reading.
_DRAIN_BYTES = 8 * MAX_BODY_BYTES

JSON = "application/json"
MERGE_PATCH_JSON = "application/merge-patch+json"


def _too_large() -> Problem:
    return Problem(413, f"the request body exceeds {MAX_BODY_BYTES} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _explain(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, UnicodeEncodeError):
        return "a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    return str(exc)


async def read_json(request: Request, *, media_types: tuple[str, ...] = (JSON,)) -> Any:
    """The parsed body; 415 for another content type, 413 past 1 MiB, 400 for bad JSON."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in media_types:
        raise Problem(
            415,
            f"Content-Type must be {' or '.join(media_types)}",
            headers={"Accept-Patch": MERGE_PATCH_JSON} if MERGE_PATCH_JSON in media_types else {},
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _DRAIN_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _DRAIN_BYTES:
            raise _too_large()
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
    if size > MAX_BODY_BYTES:
        raise _too_large()
    try:
        body = json.loads(b"".join(chunks), parse_constant=_reject_constant)
        # JSON lets a string escape half a surrogate pair (\ud800); no UTF-8 text holds one, so
        # it could not be stored or sent on (I-JSON, RFC 7493, refuses it too).
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, RecursionError) as exc:
        raise Problem(
            400,
            f"the request body is not valid JSON: {_explain(exc)}",
            type_=problems.MALFORMED_BODY,
            title="Malformed request body",
        ) from None
    return body
