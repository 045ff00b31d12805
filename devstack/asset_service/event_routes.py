"""Devstack extras for watching event delivery: list events by status, redeliver delivered ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import KeyRing
from .model import JsonObject
from .outbox import DeliveryState, DeliveryStatus, OutboxEntry
from .problems import Problem, invalid
from .publisher import redact_endpoint
from .request_body import read_json
from .store import AssetStore
from .validation import page_limit, parse_enum, query_values, shorten

EVENT_QUERY_PARAMETERS = ("status", "limit")
DEFAULT_EVENT_LIMIT = 1000
MAX_EVENT_LIMIT = 10_000
MAX_REDELIVER_IDS = 1000


def parse_event_query(pairs: Iterable[tuple[str, str]]) -> tuple[DeliveryStatus | None, int]:
    """`status` (pending, delivered or deadLettered; any when absent) and `limit`."""
    values = query_values(pairs, EVENT_QUERY_PARAMETERS)
    status = values.get("status")
    return (
        None if status is None else parse_enum(DeliveryStatus, status, "status"),
        page_limit(values, DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT),
    )


def parse_redeliver_request(body: Any) -> list[str] | None:
    """The event ids to redeliver, or None for every delivered event."""
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    for key in body:
        if key != "ids":
            raise invalid(shorten(key), "is not a known field")
    ids = body.get("ids")
    if ids is None:
        return None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_REDELIVER_IDS
        or not all(isinstance(i, str) and 1 <= len(i) <= 128 for i in ids)
    ):
        raise invalid("ids", f"must be 1 to {MAX_REDELIVER_IDS} event ids (strings)")
    return list(dict.fromkeys(ids))


def _delivery_json(state: DeliveryState) -> JsonObject:
    return {
        "subscription": state.subscription,
        "endpoint": redact_endpoint(state.endpoint),
        "subscriptionActive": state.active,
        "status": state.status.value,
        "attempts": state.attempts,
        "lastAttemptAt": state.last_attempt_at,
        "lastHttpStatus": state.last_http_status,
        "lastError": state.last_error,
        "nextAttemptAt": state.next_attempt_at,
        "deliveredAt": state.delivered_at,
        "deadLetterReason": state.dead_letter_reason,
        "deadLetteredAt": state.dead_lettered_at,
    }


def _entry_json(entry: OutboxEntry) -> JsonObject:
    return {
        "id": entry.event["id"],
        "seq": entry.seq,
        "event": entry.event,
        "deliveries": [_delivery_json(state) for state in entry.deliveries],
    }


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is None:
        return "transfer-encoding" in request.headers
    return length.strip() != "0"


class EventRoutes:
    """GET /devstack/events and POST /devstack/events/redeliver, behind the API keys."""

    def __init__(self, store: AssetStore, keys: KeyRing, wake: Callable[[], None]) -> None:
        self._store = store
        self._keys = keys
        self._wake = wake

    async def list_events(self, request: Request) -> Response:
        self._keys.authorize(request.headers, write=False)
        status, limit = parse_event_query(request.query_params.multi_items())
        with self._store.transaction(write=False) as tx:
            entries = tx.outbox.entries(status, limit)
        return JSONResponse({"items": [_entry_json(entry) for entry in entries]})

    async def redeliver(self, request: Request) -> Response:
        """Send delivered events again to the active subscriptions: duplicates on purpose."""
        self._keys.authorize(request.headers, write=True)
        ids = parse_redeliver_request(await read_json(request)) if _has_body(request) else None
        with self._store.transaction(write=True) as tx:
            unknown = tx.outbox.unknown_ids(ids) if ids else []
            if unknown:
                raise Problem(
                    404,
                    f"no event with id {shorten(unknown[0])}",
                    extensions={"unknownIds": unknown},
                )
            redelivered = tx.outbox.requeue_delivered(ids)
        self._wake()
        return JSONResponse({"redelivered": redelivered})
