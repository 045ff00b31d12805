"""The audit trail's errors. Messages name the table or queue, never a key, URL or entry body."""

from __future__ import annotations

from app_errors import AppError, DependencyFailed, DependencyUnavailable


class AuditStoreError(AppError):
    """Base of every audit table failure; `code` is the service's error code, if it gave one."""

    def __init__(self, message: str, *, table_name: str, code: str | None = None) -> None:
        super().__init__(message)
        self.table_name = table_name
        self.code = code


class AuditStoreUnavailable(AuditStoreError, DependencyUnavailable):
    """The table cannot take or give entries now (transport, timeout, 5xx, 429, auth, missing
    table): nothing about the entry is wrong, so it is worth trying again later."""


class AuditStoreRejected(AuditStoreError, DependencyFailed):
    """The table refused this entry itself (400, 413, too large): retrying will not help.

    `status` is the HTTP status (None when refused before sending), `code` the service's
    error code (e.g. PropertyValueTooLarge, EntityTooLarge).
    """

    def __init__(
        self, message: str, *, table_name: str, status: int | None, code: str | None
    ) -> None:
        super().__init__(message, table_name=table_name, code=code)
        self.status = status


class AuditRequeueFailed(DependencyUnavailable):
    """The table was down and the audit queue would not take the entry back either.

    Raised by the queue-triggered writer so the Functions host retries the message through
    the queue (and, after maxDequeueCount failures, keeps it on `<queue>-poison`).
    """
