"""SQLite persistence: one WAL connection behind a lock, one short transaction per request."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .fields import ASSET_FIELDS, CONTENT_FIELDS, snake_case
from .model import (
    Asset,
    AssetDraft,
    AssetStatus,
    EventType,
    HistoryEvent,
    JsonObject,
    ProvisioningStatus,
    ReplacementTerms,
)
from .outbox import SCHEMA as OUTBOX_SCHEMA
from .outbox import Outbox
from .validation import ListQuery

DATABASE_FILE = "assets.sqlite3"
# Version 2 added the outbox tables; a version 1 file gains them on open.
SCHEMA_VERSION = 2
_UPGRADABLE_VERSIONS = (0, 1, SCHEMA_VERSION)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY,
    serial_number TEXT NOT NULL UNIQUE,
    asset_type TEXT NOT NULL,
    location TEXT NOT NULL,
    status TEXT NOT NULL,
    device_id TEXT,
    provisioning_status TEXT NOT NULL,
    replacement TEXT,
    replacement_approved_at TEXT,
    attributes TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
-- A device belongs to at most one asset; lookups by device id are the hot path.
CREATE UNIQUE INDEX IF NOT EXISTS assets_device_id ON assets (device_id)
    WHERE device_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS assets_location ON assets (location);
CREATE TABLE IF NOT EXISTS history (
    asset_id TEXT NOT NULL REFERENCES assets (asset_id),
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    asset_version INTEGER NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (asset_id, seq)
);
"""

# One column per API member, plus when the pending replacement was approved.
_COLUMNS = (*(snake_case(name) for name in ASSET_FIELDS), "replacement_approved_at")
_ASSET_COLUMNS = ", ".join(_COLUMNS)
_ASSET_VALUES = ", ".join(f":{column}" for column in _COLUMNS)
_UPDATE_ALL = ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
_CONTENT_COLUMNS = tuple(snake_case(name) for name in CONTENT_FIELDS)


class SchemaMismatch(RuntimeError):
    """The database file was written by an incompatible version of this service."""


def _asset_from_row(row: sqlite3.Row) -> Asset:
    # Each content column holds its draft attribute; four need decoding.
    content = {column: row[column] for column in _CONTENT_COLUMNS}
    replacement = json.loads(row["replacement"]) if row["replacement"] else None
    content.update(
        status=AssetStatus(row["status"]),
        provisioning_status=ProvisioningStatus(row["provisioning_status"]),
        replacement=None if replacement is None else ReplacementTerms(**replacement),
        attributes=json.loads(row["attributes"]),
    )
    return Asset(
        asset_id=row["asset_id"],
        draft=AssetDraft(**content),
        version=row["version"],
        updated_at=row["updated_at"],
        replacement_approved_at=row["replacement_approved_at"],
    )


def _asset_params(asset: Asset) -> dict[str, Any]:
    """The row's values by column: the asset's JSON, with the replacement stored by attribute
    name (as it always was) and the attributes as JSON text."""
    params = {snake_case(name): value for name, value in asset.to_json().items()}
    terms = asset.draft.replacement
    params.update(
        replacement=None if terms is None else json.dumps(dataclasses.asdict(terms)),
        replacement_approved_at=asset.replacement_approved_at,
        attributes=json.dumps(asset.draft.attributes, ensure_ascii=False),
    )
    return params


class Transaction:
    """The operations one request may run; only valid inside AssetStore.transaction()."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.outbox = Outbox(conn)

    def get(self, asset_id: str) -> Asset | None:
        row = self._conn.execute(
            f"SELECT {_ASSET_COLUMNS} FROM assets WHERE asset_id = ?",  # noqa: S608
            (asset_id,),
        ).fetchone()
        return None if row is None else _asset_from_row(row)

    def find(self, query: ListQuery) -> list[Asset]:
        """Up to `query.limit + 1` assets in assetId order: the extra row tells if more follow."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.device_id is not None:
            clauses.append("device_id = ?")
            params.append(query.device_id)
        if query.serial_number is not None:
            clauses.append("serial_number = ?")
            params.append(query.serial_number)
        if query.location_prefix is not None:
            # substr, not LIKE: a prefix containing % or _ must match literally.
            clauses.append("substr(location, 1, length(?)) = ?")
            params.extend([query.location_prefix, query.location_prefix])
        if query.after is not None:
            clauses.append("asset_id > ?")
            params.append(query.after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            f"SELECT {_ASSET_COLUMNS} FROM assets {where} ORDER BY asset_id LIMIT ?",  # noqa: S608
            (*params, query.limit + 1),
        ).fetchall()
        return [_asset_from_row(row) for row in rows]

    def asset_with_serial(self, serial_number: str) -> str | None:
        row = self._conn.execute(
            "SELECT asset_id FROM assets WHERE serial_number = ?", (serial_number,)
        ).fetchone()
        return None if row is None else str(row["asset_id"])

    def asset_with_device(self, device_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT asset_id FROM assets WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else str(row["asset_id"])

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM assets").fetchone()[0])

    def save(self, asset: Asset) -> None:
        """Insert or replace the row; callers have checked uniqueness and versions already."""
        # An upsert, not INSERT OR REPLACE: REPLACE would silently delete another asset whose
        # serial number or device id collided, where this raises IntegrityError instead.
        self._conn.execute(
            f"INSERT INTO assets ({_ASSET_COLUMNS}) VALUES ({_ASSET_VALUES})"  # noqa: S608
            f" ON CONFLICT (asset_id) DO UPDATE SET {_UPDATE_ALL}",
            _asset_params(asset),
        )

    def append_event(
        self, asset: Asset, event_type: EventType, at: str, details: JsonObject
    ) -> HistoryEvent:
        row = self._conn.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM history WHERE asset_id = ?", (asset.asset_id,)
        ).fetchone()
        event = HistoryEvent(
            seq=int(row[0]),
            type=event_type,
            at=at,
            asset_version=asset.version,
            details=details,
        )
        self._conn.execute(
            "INSERT INTO history (asset_id, seq, type, at, asset_version, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                asset.asset_id,
                event.seq,
                event.type.value,
                event.at,
                event.asset_version,
                json.dumps(details, ensure_ascii=False),
            ),
        )
        return event

    def history(self, asset_id: str) -> list[HistoryEvent]:
        rows = self._conn.execute(
            "SELECT seq, type, at, asset_version, details FROM history"
            " WHERE asset_id = ? ORDER BY seq",
            (asset_id,),
        ).fetchall()
        return [
            HistoryEvent(
                seq=row["seq"],
                type=EventType(row["type"]),
                at=row["at"],
                asset_version=row["asset_version"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]


class AssetStore:
    """Owns the database file; requests run on worker threads, so the connection is locked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._commit_listeners: list[Callable[[], None]] = []
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version not in _UPGRADABLE_VERSIONS:
            raise SchemaMismatch(
                f"{self.path} has schema version {version}; this service needs {SCHEMA_VERSION}"
            )
        self._conn.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}{OUTBOX_SCHEMA}"
            f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )

    def on_events_committed(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit that appended outbox events."""
        self._commit_listeners.append(listener)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE for writes, so read-check-write cannot interleave with another writer."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            tx = Transaction(self._conn)
            try:
                yield tx
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        if tx.outbox.appended:
            for listener in self._commit_listeners:
                listener()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
