"""The append-only audit trail of every decision about devices and assets.

Flows record entries to an AuditTrail (audit.trail.QueuedAuditTrail: the audit queue, never
blocking a device, with audit.backlog cutting the batches); the queue's trigger
(audit.writer.AuditWriter) stores them in Azure Table Storage (audit.table_writer over
audit.table_access), where operators read a device's, asset's or registration's timeline
(audit.timeline).

This file re-exports only the entry, the port and the errors: the adapters load the Storage
SDKs, so they are imported from their modules.
"""

from audit.entry import AuditAction, AuditActor, AuditEntry
from audit.errors import (
    AuditRequeueFailed,
    AuditStoreError,
    AuditStoreRejected,
    AuditStoreUnavailable,
)
from audit.port import AuditTrail, ListAudit, NoAudit

__all__ = [
    "AuditAction",
    "AuditActor",
    "AuditEntry",
    "AuditRequeueFailed",
    "AuditStoreError",
    "AuditStoreRejected",
    "AuditStoreUnavailable",
    "AuditTrail",
    "ListAudit",
    "NoAudit",
]
