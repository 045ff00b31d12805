"""The transactional outbox: change events, their per-subscription deliveries and dead letters.

An event and one pending delivery per active subscription are inserted in the transaction of
the change itself, so an event exists exactly when its change committed. The publisher then
moves each delivery to delivered, back to pending with a later due time, or to dead_letters.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .model import JsonObject, format_epoch

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    active INTEGER NOT NULL
);
-- AUTOINCREMENT: seq never reuses a number, so it is the commit order of the events.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    seq INTEGER NOT NULL REFERENCES outbox (seq),
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at REAL NOT NULL,
    last_attempt_at TEXT,
    last_http_status INTEGER,
    last_error TEXT,
    delivered_at TEXT,
    PRIMARY KEY (subscription_id, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (subscription_id, seq)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_seq ON deliveries (seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    seq INTEGER NOT NULL REFERENCES outbox (seq),
    reason TEXT NOT NULL,
    dead_lettered_at TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_attempt_at TEXT,
    last_http_status INTEGER,
    last_error TEXT,
    PRIMARY KEY (subscription_id, seq)
);
CREATE INDEX IF NOT EXISTS dead_letters_seq ON dead_letters (seq);
"""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTERED = "deadLettered"


@dataclass(frozen=True)
class Subscription:
    id: int
    endpoint: str
    name: str


@dataclass(frozen=True)
class DueDelivery:
    """One event ready to send to one subscription; `event` is its stored JSON text."""

    seq: int
    event_id: str
    attempts: int
    event: str
    published_at: float


@dataclass(frozen=True)
class Attempt:
    """How one delivery attempt ended: the HTTP status if any answer came, else the error."""

    at: str
    http_status: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryState:
    subscription: str
    endpoint: str
    active: bool
    status: DeliveryStatus
    attempts: int
    last_attempt_at: str | None
    last_http_status: int | None
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    dead_letter_reason: str | None
    dead_lettered_at: str | None


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    event: JsonObject
    deliveries: list[DeliveryState]


class Outbox:
    """Outbox operations on the connection of one AssetStore transaction.

    Lists of seqs or ids travel as one JSON parameter (json_each), so no SQL is built at run time.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.appended = 0

    def append(self, events: Sequence[JsonObject]) -> None:
        """Queue events for every active subscription, due now."""
        now = time.time()
        for event in events:
            cursor = self._conn.execute(
                "INSERT INTO outbox (event_id, event, published_at) VALUES (?, ?, ?)",
                (event["id"], json.dumps(event, ensure_ascii=False), now),
            )
            self._conn.execute(
                "INSERT INTO deliveries (subscription_id, seq, status, attempts, due_at)"
                " SELECT id, ?, 'pending', 0, ? FROM subscriptions WHERE active = 1",
                (cursor.lastrowid, now),
            )
        self.appended += len(events)

    def activate(self, endpoints: Sequence[tuple[str, str]]) -> list[Subscription]:
        """Make exactly these (endpoint, name) pairs the active subscriptions."""
        self._conn.execute("UPDATE subscriptions SET active = 0")
        subscriptions: list[Subscription] = []
        for endpoint, name in endpoints:
            row = self._conn.execute(
                "INSERT INTO subscriptions (endpoint, name, active) VALUES (?, ?, 1)"
                " ON CONFLICT (endpoint) DO UPDATE SET name = excluded.name, active = 1"
                " RETURNING id",
                (endpoint, name),
            ).fetchone()
            subscriptions.append(Subscription(id=int(row[0]), endpoint=endpoint, name=name))
        return subscriptions

    def due(self, subscription_id: int, now: float, limit: int) -> list[DueDelivery]:
        """The oldest due events that share the oldest due one's attempt count, in seq order.

        One attempt count per batch, so that the batch's aeg-delivery-count is true of each.
        """
        rows = self._conn.execute(
            "WITH head AS (SELECT attempts FROM deliveries WHERE subscription_id = ?"
            "  AND status = 'pending' AND due_at <= ? ORDER BY seq LIMIT 1)"
            " SELECT d.seq, o.event_id, d.attempts, o.event, o.published_at"
            " FROM deliveries d JOIN outbox o ON o.seq = d.seq"
            " WHERE d.subscription_id = ? AND d.status = 'pending' AND d.due_at <= ?"
            "  AND d.attempts = (SELECT attempts FROM head)"
            " ORDER BY d.seq LIMIT ?",
            (subscription_id, now, subscription_id, now, limit),
        ).fetchall()
        return [DueDelivery(*row) for row in rows]

    def next_due_at(self, subscription_id: int) -> float | None:
        row = self._conn.execute(
            "SELECT min(due_at) FROM deliveries WHERE subscription_id = ? AND status = 'pending'",
            (subscription_id,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, subscription_id: int, seqs: Sequence[int], attempt: Attempt) -> None:
        self._conn.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1,"
            " last_attempt_at = ?, last_http_status = ?, delivered_at = ?"
            " WHERE subscription_id = ? AND seq IN (SELECT value FROM json_each(?))",
            (attempt.at, attempt.http_status, attempt.at, subscription_id, json.dumps(seqs)),
        )

    def retry_later(self, subscription_id: int, seq: int, due_at: float, attempt: Attempt) -> None:
        self._conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1, due_at = ?, last_attempt_at = ?,"
            " last_http_status = ?, last_error = ? WHERE subscription_id = ? AND seq = ?",
            (due_at, attempt.at, attempt.http_status, attempt.error, subscription_id, seq),
        )

    def dead_letter(
        self, subscription_id: int, seqs: Sequence[int], reason: str, attempt: Attempt
    ) -> None:
        """Move the deliveries to dead_letters, counting the attempt that ended them."""
        selected = json.dumps(seqs)
        self._conn.execute(
            "INSERT INTO dead_letters (subscription_id, seq, reason, dead_lettered_at, attempts,"
            " last_attempt_at, last_http_status, last_error)"
            " SELECT subscription_id, seq, ?, ?, attempts + 1, ?, ?, ? FROM deliveries"
            " WHERE subscription_id = ? AND seq IN (SELECT value FROM json_each(?))",
            (
                reason,
                attempt.at,
                attempt.at,
                attempt.http_status,
                attempt.error,
                subscription_id,
                selected,
            ),
        )
        self._conn.execute(
            "DELETE FROM deliveries"
            " WHERE subscription_id = ? AND seq IN (SELECT value FROM json_each(?))",
            (subscription_id, selected),
        )

    def requeue_delivered(self, event_ids: Sequence[str] | None) -> list[str]:
        """Make delivered events due again for the active subscriptions; their event ids."""
        rows = self._conn.execute(
            "UPDATE deliveries SET status = 'pending', due_at = ?1"
            " WHERE status = 'delivered'"
            " AND subscription_id IN (SELECT id FROM subscriptions WHERE active = 1)"
            " AND (?2 IS NULL OR seq IN (SELECT seq FROM outbox"
            "  WHERE event_id IN (SELECT value FROM json_each(?2))))"
            " RETURNING seq",
            (time.time(), None if event_ids is None else json.dumps(list(event_ids))),
        ).fetchall()
        seqs = sorted({int(row[0]) for row in rows})
        found = self._conn.execute(
            "SELECT event_id FROM outbox"
            " WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (json.dumps(seqs),),
        )
        return [str(row[0]) for row in found]

    def unknown_ids(self, event_ids: Sequence[str]) -> list[str]:
        rows = self._conn.execute(
            "SELECT event_id FROM outbox WHERE event_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(event_ids)),),
        )
        known = {row[0] for row in rows}
        return [event_id for event_id in event_ids if event_id not in known]

    def entries(self, status: DeliveryStatus | None, limit: int) -> list[OutboxEntry]:
        """The newest `limit` events with a delivery in `status` (any if None), oldest first."""
        rows = self._conn.execute(
            "SELECT seq, event FROM outbox o WHERE ?1 IS NULL"
            " OR (?1 = 'deadLettered'"
            "  AND EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = o.seq))"
            " OR EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = o.seq AND d.status = ?1)"
            " ORDER BY seq DESC LIMIT ?2",
            (None if status is None else status.value, limit),
        ).fetchall()
        if not rows:
            return []
        events = {int(row[0]): json.loads(row[1]) for row in rows}
        selected = json.dumps(sorted(events))
        states: dict[int, list[DeliveryState]] = {seq: [] for seq in events}
        for row in self._conn.execute(
            "SELECT d.seq, s.name, s.endpoint, s.active, d.status, d.attempts, d.last_attempt_at,"
            " d.last_http_status, d.last_error, d.due_at, d.delivered_at"
            " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.seq IN (SELECT value FROM json_each(?))",
            (selected,),
        ):
            pending = row[4] == DeliveryStatus.PENDING.value
            states[row[0]].append(
                DeliveryState(
                    subscription=row[1],
                    endpoint=row[2],
                    active=bool(row[3]),
                    status=DeliveryStatus(row[4]),
                    attempts=row[5],
                    last_attempt_at=row[6],
                    last_http_status=row[7],
                    last_error=row[8],
                    next_attempt_at=format_epoch(row[9]) if pending else None,
                    delivered_at=row[10],
                    dead_letter_reason=None,
                    dead_lettered_at=None,
                )
            )
        for row in self._conn.execute(
            "SELECT d.seq, s.name, s.endpoint, s.active, d.attempts, d.last_attempt_at,"
            " d.last_http_status, d.last_error, d.reason, d.dead_lettered_at"
            " FROM dead_letters d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.seq IN (SELECT value FROM json_each(?))",
            (selected,),
        ):
            states[row[0]].append(
                DeliveryState(
                    subscription=row[1],
                    endpoint=row[2],
                    active=bool(row[3]),
                    status=DeliveryStatus.DEAD_LETTERED,
                    attempts=row[4],
                    last_attempt_at=row[5],
                    last_http_status=row[6],
                    last_error=row[7],
                    next_attempt_at=None,
                    delivered_at=None,
                    dead_letter_reason=row[8],
                    dead_lettered_at=row[9],
                )
            )
        return [
            OutboxEntry(seq, events[seq], sorted(states[seq], key=lambda state: state.subscription))
            for seq in sorted(events)
        ]
