"""The append-only audit trail of every decision about devices and assets.

Flows record entries to an AuditTrail (QueuedAuditTrail: the audit queue, never blocking a
device); the queue's trigger (AuditWriter) stores them in Azure Table Storage
(TableAuditStore), where operators read a device's, asset's or registration's timeline.
"""

from audit.entry import AuditAction, AuditActor, AuditEntry
from audit.errors import (
    AuditRequeueFailed,
    AuditStoreError,
    AuditStoreRejected,
    AuditStoreUnavailable,
)
from audit.port import AuditTrail, ListAudit, NoAudit
from audit.queue import AuditQueue, AuditSender, DelayedSender
from audit.table_store import DECISION_ACTIONS, TableAuditStore, Timeline
from audit.trail import QueuedAuditTrail, TrailCounts
from audit.writer import AuditStore, AuditWriter

__all__ = [
    "DECISION_ACTIONS",
    "AuditAction",
    "AuditActor",
    "AuditEntry",
    "AuditQueue",
    "AuditRequeueFailed",
    "AuditSender",
    "AuditStore",
    "AuditStoreError",
    "AuditStoreRejected",
    "AuditStoreUnavailable",
    "AuditTrail",
    "AuditWriter",
    "DelayedSender",
    "ListAudit",
    "NoAudit",
    "QueuedAuditTrail",
    "TableAuditStore",
    "Timeline",
    "TrailCounts",
]
