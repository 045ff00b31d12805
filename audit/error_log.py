"""The last resort for an entry that cannot be stored: an ERROR log line that carries it whole.

The entry travels as structured fields (logging's `extra`, custom dimensions in Application
Insights): `auditEntry` is the full entry as JSON, as the queue would have carried it, and the
identifiers are repeated as their own fields so the line can be found by device or asset.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from audit.entry import AuditEntry

_IDENTIFIERS = ("entryId", "action", "actor", "outcome", "registrationId", "deviceId", "assetId")


def entry_fields(entry: AuditEntry) -> dict[str, Any]:
    """The entry as log fields; never raises (details that are not JSON are written as repr)."""
    message = entry.model_dump(mode="json", by_alias=True, exclude_none=True, fallback=repr)
    fields: dict[str, Any] = {name: message[name] for name in _IDENTIFIERS if name in message}
    fields["auditEntry"] = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return fields


def log_unrecorded(logger: logging.Logger, entry: AuditEntry, reason: str, **fields: Any) -> None:
    """One ERROR line saying why the entry is not in the audit trail, with the entry in it."""
    logger.error(
        "audit entry not recorded: %s",
        reason,
        extra={**entry_fields(entry), "reason": reason, **fields},
    )
