"""Why a sync attempt did not complete."""

from __future__ import annotations

from app_errors import AppError, Conflict


class SyncError(AppError):
    """Base of sync failures."""


class DeviceNotOnAnyHub(SyncError, Conflict):
    """The asset names a device no configured hub holds (yet): DPS may still be creating it."""

    def __init__(self, message: str, device_id: str) -> None:
        super().__init__(message)
        self.device_id = device_id


class SyncConflict(SyncError, Conflict):
    """Etag/If-Match conflicts kept winning after the bounded number of re-reads."""
