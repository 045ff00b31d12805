"""SQLite persistence of one hub: policy keys, devices with their twins, the event log.

Calls run on the event loop: each is well under a millisecond, and worker threads convoy on
the GIL under load. A twin write and the notification it emits commit in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from .devices import Device
from .notifications import TwinChangeNotification
from .policies import Policy, Right, new_key
from .twin import TwinState

SCHEMA_VERSION = 1
# Events kept for GET /devstack/events once delivered (or when nobody delivers them).
EVENTS_RETAINED = 10_000
_PRUNE_EVERY = 1_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY,
    primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    twin TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL);
"""


class SchemaMismatch(RuntimeError):
    """The database was written by an incompatible version of the emulator."""


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class HubStore:
    """One hub's database file. Not thread-safe: use it from the event loop only."""

    def __init__(self, path: Path, *, record_delivery: bool) -> None:
        """record_delivery False: nobody delivers events, so they count as delivered at once."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._record_delivery = record_delivery
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._check_schema()
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self._last_seq = int(row[0])
        self._next_offset = int(self._meta("next_offset", "0") or 0)
        self._delivered = int(self._meta("delivered", "0") or 0)
        if not record_delivery:
            self._set_delivered(self._last_seq)

    def _check_schema(self) -> None:
        found = self._meta("schema", None)
        if found is None:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif found != str(SCHEMA_VERSION):
            raise SchemaMismatch(f"schema {found}, this emulator uses {SCHEMA_VERSION}")

    def _meta(self, key: str, default: str | None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def _put_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        self._conn.close()

    def policies(self, rights: Mapping[str, frozenset[Right]]) -> dict[str, Policy]:
        """The hub's policies; keys are generated on first use and then kept."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for name in rights:
                self._conn.execute(
                    "INSERT OR IGNORE INTO policies (name, primary_key, secondary_key) "
                    "VALUES (?, ?, ?)",
                    (name, new_key(), new_key()),
                )
            rows = self._conn.execute("SELECT name, primary_key, secondary_key FROM policies")
            return {
                name: Policy(name, primary, secondary, rights[name])
                for name, primary, secondary in rows
                if name in rights
            }

    def get(self, device_id: str) -> tuple[Device, TwinState] | None:
        row = self._conn.execute(
            "SELECT device, twin FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        if row is None:
            return None
        return Device.from_json(json.loads(row[0])), TwinState.from_json(json.loads(row[1]))

    def list_devices(self, limit: int) -> list[Device]:
        rows = self._conn.execute("SELECT device FROM devices ORDER BY device_id LIMIT ?", (limit,))
        return [Device.from_json(json.loads(device)) for (device,) in rows]

    def devices_after(
        self, after: str | None, batch: int = 500
    ) -> Iterator[tuple[Device, TwinState]]:
        """Every device and twin with an id above `after`, in id order, read `batch` at a time."""
        cursor = after
        while True:
            if cursor is None:
                rows = self._conn.execute(
                    "SELECT device_id, device, twin FROM devices ORDER BY device_id LIMIT ?",
                    (batch,),
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT device_id, device, twin FROM devices WHERE device_id > ? "
                    "ORDER BY device_id LIMIT ?",
                    (cursor, batch),
                ).fetchall()
            for _, device, twin in rows:
                yield Device.from_json(json.loads(device)), TwinState.from_json(json.loads(twin))
            if len(rows) < batch:
                return
            cursor = str(rows[-1][0])

    def save(
        self,
        device: Device,
        twin: TwinState,
        notification: TwinChangeNotification | None = None,
        enqueued_time: str = "",
    ) -> None:
        """Insert or update a device and its twin, and append the event the write emitted."""
        appended: tuple[int, int] | None = None
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO devices (device_id, device, twin) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET device = excluded.device, "
                "twin = excluded.twin",
                (device.device_id, _dumps(device.to_json()), _dumps(twin.to_json())),
            )
            if notification is not None:
                appended = self._append(notification, enqueued_time)
        if appended is not None:
            # Committed: only now move the counters.
            self._last_seq, self._next_offset = appended
            if not self._record_delivery:
                self._delivered = self._last_seq
            if self._last_seq % _PRUNE_EVERY == 0:
                self._prune()

    def delete(self, device_id: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))

    def _append(self, notification: TwinChangeNotification, enqueued_time: str) -> tuple[int, int]:
        """Insert the next event; return its sequence number and the next offset."""
        seq = self._last_seq + 1
        event = notification.to_event(
            sequence_number=seq, offset=self._next_offset, enqueued_time=enqueued_time
        )
        self._conn.execute("INSERT INTO events (seq, event) VALUES (?, ?)", (seq, _dumps(event)))
        next_offset = self._next_offset + len(event["body"].encode("utf-8"))
        self._put_meta("next_offset", str(next_offset))
        if not self._record_delivery:
            self._put_meta("delivered", str(seq))
        return seq, next_offset

    def events_after(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(sequence number, event JSON text) above `after`, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, event FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [(int(seq), str(event)) for seq, event in rows]

    @property
    def last_sequence_number(self) -> int:
        return self._last_seq

    @property
    def delivered(self) -> int:
        """The highest sequence number handed to the events URL."""
        return self._delivered

    def _set_delivered(self, seq: int) -> None:
        with self._conn:
            self._put_meta("delivered", str(seq))
        self._delivered = seq

    def mark_delivered(self, seq: int) -> None:
        self._set_delivered(seq)

    def _prune(self) -> None:
        keep_from = min(self._delivered, self._last_seq - EVENTS_RETAINED)
        if keep_from > 0:
            with self._conn:
                self._conn.execute("DELETE FROM events WHERE seq <= ?", (keep_from,))
