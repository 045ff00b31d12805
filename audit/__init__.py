"""The append-only audit trail of every decision about devices and assets."""

from audit.entry import AuditAction, AuditActor, AuditEntry
from audit.port import AuditTrail, ListAudit, NoAudit

__all__ = ["AuditAction", "AuditActor", "AuditEntry", "AuditTrail", "ListAudit", "NoAudit"]
