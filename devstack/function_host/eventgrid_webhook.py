"""Classify an Event Grid webhook delivery as the Functions Event Grid extension does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
_CLOUDEVENTS_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json")


class BadDelivery(ValueError):
    """The delivery cannot be processed (bad JSON, missing header, no validation code): 400."""


@dataclass(frozen=True)
class Delivery:
    """What a webhook request asks for: validation, events to invoke, or unsubscribe."""

    kind: Literal["validation", "notification", "unsubscribe"]
    events: list[dict[str, Any]] = field(default_factory=list)
    validation_code: str | None = None


def parse_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    """Parse headers and body; raise BadDelivery with a message naming the problem."""
    event_type = headers.get("aeg-event-type", "").strip().lower()
    if event_type == "unsubscribe":
        return Delivery(kind="unsubscribe")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadDelivery(f"body is not valid JSON: {exc}") from exc
    events = _events(payload)
    if event_type == "subscriptionvalidation":
        return Delivery(kind="validation", validation_code=_validation_code(events))
    if event_type == "notification" or _is_cloudevents(headers, events):
        return Delivery(kind="notification", events=events)
    raise BadDelivery(
        "missing aeg-event-type header (expected Notification or SubscriptionValidation)"
    )


def _events(payload: Any) -> list[dict[str, Any]]:
    events = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(event, dict) for event in events):
        raise BadDelivery("body must be an event object or an array of event objects")
    return events


def _is_cloudevents(headers: Mapping[str, str], events: list[dict[str, Any]]) -> bool:
    """CloudEvents need no aeg-event-type: known by content type or by `specversion`."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _CLOUDEVENTS_TYPES:
        if not all("specversion" in event for event in events):
            raise BadDelivery(f"{content_type} body has an event without specversion")
        return True
    return bool(events) and all("specversion" in event for event in events)


def _validation_code(events: list[dict[str, Any]]) -> str:
    for event in events:
        if (
            event.get("eventType") == VALIDATION_EVENT_TYPE
            or event.get("type") == VALIDATION_EVENT_TYPE
        ):
            data = event.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if isinstance(code, str) and code:
                return code
    raise BadDelivery(f"no {VALIDATION_EVENT_TYPE} with data.validationCode in the body")
