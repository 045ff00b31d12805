"""Registrations in SQLite, used on the event loop: each statement takes far under 1 ms."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATABASE_FILE = "registrations.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    registration_key TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    device_id TEXT,
    assigned_hub TEXT,
    initial_hub TEXT,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredRegistration:
    """What DPS remembers of a device: where it is and its last registration state."""

    registration_id: str
    group_id: str
    device_id: str | None
    assigned_hub: str | None
    initial_hub: str | None
    created_at: str
    state: dict[str, Any]


class RegistrationStore:
    """Registration ids are case-insensitive in DPS: the key is the casefolded id."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, registration_id: str) -> StoredRegistration | None:
        row = self._db.execute(
            "SELECT * FROM registrations WHERE registration_key = ?", (registration_id.casefold(),)
        ).fetchone()
        if row is None:
            return None
        return StoredRegistration(
            registration_id=row["registration_id"],
            group_id=row["group_id"],
            device_id=row["device_id"],
            assigned_hub=row["assigned_hub"],
            initial_hub=row["initial_hub"],
            created_at=row["created_at"],
            state=json.loads(row["state"]),
        )

    def save(self, registration: StoredRegistration) -> None:
        self._db.execute(
            "INSERT INTO registrations VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (registration_key) DO UPDATE SET"
            " group_id = excluded.group_id, device_id = excluded.device_id,"
            " assigned_hub = excluded.assigned_hub, initial_hub = excluded.initial_hub,"
            " state = excluded.state",
            (
                registration.registration_id.casefold(),
                registration.registration_id,
                registration.group_id,
                registration.device_id,
                registration.assigned_hub,
                registration.initial_hub,
                registration.created_at,
                json.dumps(registration.state),
            ),
        )

    def delete(self, registration_id: str) -> None:
        self._db.execute(
            "DELETE FROM registrations WHERE registration_key = ?", (registration_id.casefold(),)
        )

    def close(self) -> None:
        self._db.close()
