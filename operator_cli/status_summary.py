"""`status`: what each source said, reduced to the figures of one screen, with a verdict.

Pure: the readings come in (status_sources reads them), nothing is read here. A queue is seen
through a peek, which returns at most its first 32 visible messages: figures drawn from the
peek (kinds, reasons, the oldest) are about those messages only, and say so (`complete` is
false when the queue holds more than was seen). Messages being retried are invisible to a peek
until their visibility timeout ends, so a queue's length can exceed what was seen even when it
is short.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from device_twin import ProvisioningState
from health.report import HealthReport
from messages import ReconciliationMessage
from operator_cli.letters import read_letter
from operator_cli.queue_text import Unreadable, json_object
from resilience.queue_port import QueueEncoding

SCHEMA_VERSION = 1
Verdict = Literal["ok", "degraded", "incomplete"]
EXIT_CODES: dict[Verdict, int] = {"ok": 0, "degraded": 1, "incomplete": 3}
"""2 stays what it is for every command: bad usage or configuration."""
MOST_REASONS = 8
"""Dead-letter reasons shown one by one; the rest are summed as `other reasons`."""
OTHER_REASONS = "other reasons"


@dataclass(frozen=True)
class Unread:
    """A source that could not be read, and why (fit for a terminal: no secret, no URL key)."""

    problem: str


@dataclass(frozen=True)
class PeekedMessage:
    message_id: str
    inserted_on: datetime | None
    text: str


@dataclass(frozen=True)
class QueueGlance:
    approximate_count: int
    """Visible and invisible messages alike, as the queue service counts them."""
    peeked: list[PeekedMessage]
    """Its first visible messages, up to 32."""


@dataclass(frozen=True)
class HubDevices:
    hub: str
    by_state: dict[str, int]
    """Devices whose twin's provisioningState is not `provisioned`, by that state."""
    oldest_pending_since: datetime | None
    capped: bool
    """The query's limit was reached: there may be more."""
    problem: str | None = None


@dataclass(frozen=True)
class Readings:
    read_at: datetime
    app_url: str | None
    app: HealthReport | Unread
    reconciliation: QueueGlance | Unread
    dead_letters: QueueGlance | Unread
    audit: QueueGlance | Unread
    devices: list[HubDevices] | Unread


@dataclass(frozen=True)
class QueueNames:
    reconciliation: str
    dead_letters: str
    audit: str


@dataclass(frozen=True)
class QueueFigures:
    name: str
    messages: int | None
    seen: int
    oldest_queued_at: datetime | None
    problem: str | None

    @property
    def complete(self) -> bool:
        """Every message the queue holds was seen by the peek."""
        return self.messages is not None and self.seen >= self.messages


@dataclass(frozen=True)
class ReconciliationFigures:
    queue: QueueFigures
    by_kind: dict[str, int]
    unreadable: int
    fallbacks_seen: int
    oldest_fallback_at: datetime | None
    """When the oldest fallback seen was recorded (its message's recordedAt)."""


@dataclass(frozen=True)
class DeadLetterFigures:
    queue: QueueFigures
    by_reason: list[tuple[str, int]]
    """Most frequent first, at most MOST_REASONS, then OTHER_REASONS."""
    unreadable: int


@dataclass(frozen=True)
class DeviceFigures:
    hubs: list[HubDevices]
    by_state: dict[str, int]
    oldest_pending_since: datetime | None
    capped: bool
    problem: str | None


@dataclass(frozen=True)
class StatusSummary:
    read_at: datetime
    app_url: str | None
    app: HealthReport | None
    app_problem: str | None
    reconciliation: ReconciliationFigures
    dead_letters: DeadLetterFigures
    audit: QueueFigures
    devices: DeviceFigures

    @property
    def verdict(self) -> Verdict:
        """Degraded when the app says so, whatever else could not be read (that much is known);
        incomplete when any source could not be read; ok otherwise."""
        if self.app is not None and self.app.status == "degraded":
            return "degraded"
        problems = [
            self.app_problem,
            self.reconciliation.queue.problem,
            self.dead_letters.queue.problem,
            self.audit.problem,
            self.devices.problem,
            *(hub.problem for hub in self.devices.hubs),
        ]
        return "incomplete" if any(problems) else "ok"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def summarise(readings: Readings, names: QueueNames, encoding: QueueEncoding) -> StatusSummary:
    app = readings.app
    return StatusSummary(
        read_at=readings.read_at,
        app_url=readings.app_url,
        app=app if isinstance(app, HealthReport) else None,
        app_problem=app.problem if isinstance(app, Unread) else None,
        reconciliation=_reconciliation(names.reconciliation, readings.reconciliation, encoding),
        dead_letters=_dead_letters(names.dead_letters, readings.dead_letters, encoding),
        audit=_queue(names.audit, readings.audit),
        devices=_devices(readings.devices),
    )


def _queue(name: str, glance: QueueGlance | Unread) -> QueueFigures:
    if isinstance(glance, Unread):
        return QueueFigures(name, None, 0, None, glance.problem)
    moments = [m.inserted_on for m in glance.peeked if m.inserted_on is not None]
    return QueueFigures(
        name,
        glance.approximate_count,
        len(glance.peeked),
        min(map(_aware, moments), default=None),
        None,
    )


def _reconciliation(
    name: str, glance: QueueGlance | Unread, encoding: QueueEncoding
) -> ReconciliationFigures:
    figures = _queue(name, glance)
    kinds: Counter[str] = Counter()
    fallbacks: list[datetime] = []
    unreadable = 0
    for peeked in glance.peeked if isinstance(glance, QueueGlance) else []:
        message = _reconciliation_message(peeked.text, encoding)
        if message is None:
            unreadable += 1
            continue
        kinds[message.kind] += 1
        if message.kind == "allocation":
            fallbacks.append(_aware(message.recorded_at))
    return ReconciliationFigures(
        queue=figures,
        by_kind=dict(sorted(kinds.items())),
        unreadable=unreadable,
        fallbacks_seen=len(fallbacks),
        oldest_fallback_at=min(fallbacks, default=None),
    )


def _reconciliation_message(text: str, encoding: QueueEncoding) -> ReconciliationMessage | None:
    parsed = json_object(text, encoding)
    if isinstance(parsed, Unreadable):
        return None
    try:
        return ReconciliationMessage.model_validate(parsed)
    except ValidationError:
        return None


def _dead_letters(
    name: str, glance: QueueGlance | Unread, encoding: QueueEncoding
) -> DeadLetterFigures:
    figures = _queue(name, glance)
    reasons: Counter[str] = Counter()
    unreadable = 0
    for peeked in glance.peeked if isinstance(glance, QueueGlance) else []:
        queued = read_letter(peeked.message_id, peeked.inserted_on, peeked.text, encoding)
        if queued.letter is None:
            unreadable += 1
        else:
            reasons[queued.letter.reason] += 1
    return DeadLetterFigures(figures, _most_frequent(reasons), unreadable)


def _most_frequent(reasons: Counter[str]) -> list[tuple[str, int]]:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) <= MOST_REASONS:
        return ranked
    shown = ranked[: MOST_REASONS - 1]
    return [*shown, (OTHER_REASONS, sum(count for _, count in ranked[MOST_REASONS - 1 :]))]


def tally_devices(hub: str, tags: Iterable[Mapping[str, Any]], *, limit: int) -> HubDevices:
    """One hub's twins (their tags) found in a state other than provisioned, counted by state.

    `limit`: how many the query could return; reaching it means there may be more."""
    states: Counter[str] = Counter()
    pending: list[datetime] = []
    seen = 0
    for twin_tags in tags:
        seen += 1
        state = twin_tags.get("provisioningState")
        states[state if isinstance(state, str) else "?"] += 1
        if state == ProvisioningState.PENDING_RECONCILIATION:
            since = _timestamp(twin_tags.get("pendingSince"))
            if since is not None:
                pending.append(since)
    return HubDevices(hub, dict(sorted(states.items())), min(pending, default=None), seen >= limit)


def _devices(hubs: list[HubDevices] | Unread) -> DeviceFigures:
    if isinstance(hubs, Unread):
        return DeviceFigures([], {}, None, False, hubs.problem)
    totals: Counter[str] = Counter()
    for hub in hubs:
        totals.update(hub.by_state)
    pending = [hub.oldest_pending_since for hub in hubs if hub.oldest_pending_since is not None]
    return DeviceFigures(
        hubs=hubs,
        by_state=dict(sorted(totals.items())),
        oldest_pending_since=min(pending, default=None),
        capped=any(hub.capped for hub in hubs),
        problem=None,
    )


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_seconds(moment: datetime | None, now: datetime) -> float | None:
    """How long ago, never negative (another machine's clock may run ahead of this one's)."""
    if moment is None:
        return None
    return round(max(0.0, (now - _aware(moment)).total_seconds()), 1)


def status_json(summary: StatusSummary) -> dict[str, Any]:
    """The --json document (docs/operations.md, "The status of the app"): every key always
    present, null where a source was not read."""
    now = summary.read_at
    app = summary.app
    reconciliation = summary.reconciliation
    dead = summary.dead_letters
    devices = summary.devices
    return {
        "schemaVersion": SCHEMA_VERSION,
        "readAt": _iso(now),
        "verdict": summary.verdict,
        "exitCode": summary.exit_code,
        "app": {
            "url": summary.app_url,
            "answered": app is not None,
            "problem": summary.app_problem,
            "status": app.status if app else None,
            "checkedAt": _iso(app.checked_at) if app else None,
            "policyVersion": app.policy.version if app else None,
            "breakers": [
                {
                    "name": breaker.name,
                    "state": breaker.state,
                    "since": _iso(breaker.since),
                    "sinceSeconds": age_seconds(breaker.since, now),
                    "failures": breaker.failures,
                    "failMax": breaker.fail_max,
                    "resetSeconds": breaker.reset_seconds,
                }
                for breaker in (app.breakers if app else [])
            ],
        },
        "reconciliation": {
            **_queue_json(reconciliation.queue, now),
            "byKind": reconciliation.by_kind,
            "unreadable": reconciliation.unreadable,
            "fallbacksSeen": reconciliation.fallbacks_seen,
            "oldestFallbackAt": _iso(reconciliation.oldest_fallback_at),
            "oldestFallbackAgeSeconds": age_seconds(reconciliation.oldest_fallback_at, now),
        },
        "deadLetters": {
            **_queue_json(dead.queue, now),
            "byReason": [{"reason": reason, "count": count} for reason, count in dead.by_reason],
            "unreadable": dead.unreadable,
        },
        "auditBacklog": _queue_json(summary.audit, now),
        "devices": {
            "read": devices.problem is None,
            "problem": devices.problem,
            "byState": devices.by_state,
            "capped": devices.capped,
            "oldestPendingSince": _iso(devices.oldest_pending_since),
            "oldestPendingAgeSeconds": age_seconds(devices.oldest_pending_since, now),
            "hubs": [
                {
                    "hub": hub.hub,
                    "problem": hub.problem,
                    "byState": hub.by_state,
                    "capped": hub.capped,
                    "oldestPendingSince": _iso(hub.oldest_pending_since),
                }
                for hub in devices.hubs
            ],
        },
    }


def _queue_json(figures: QueueFigures, now: datetime) -> dict[str, Any]:
    return {
        "queue": figures.name,
        "read": figures.problem is None,
        "problem": figures.problem,
        "messages": figures.messages,
        "seen": figures.seen,
        "complete": figures.complete,
        "oldestQueuedAt": _iso(figures.oldest_queued_at),
        "oldestAgeSeconds": age_seconds(figures.oldest_queued_at, now),
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")
