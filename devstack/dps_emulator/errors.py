"""Typed errors of the DPS emulator, each carrying the DPS error code it maps to."""

from __future__ import annotations

from pathlib import Path


class StartupError(RuntimeError):
    """The emulator cannot start: bad options, group files or hubs file."""


class EnrollmentGroupError(StartupError):
    """An enrollment group file is unreadable or invalid; names the file and the field."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        super().__init__(f"enrollment group file {path}: {field}: {problem}")
        self.path = path
        self.field = field
        self.problem = problem


class HubsFileError(StartupError):
    """The hubs file is unreadable or invalid."""


class RequestRejected(Exception):
    """A device request refused before any registration starts (HTTP 4xx, DPS error body)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class RegistrationFailed(Exception):
    """A registration operation ended with status "failed" (errorCode/errorMessage)."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


class HubOperationFailed(RegistrationFailed):
    """The IoT hub refused or could not be reached while creating or updating the device."""


# DPS error codes (errorCode in error bodies and in failed registration states).
BAD_REQUEST = 400004
CUSTOM_ALLOCATION_FAILED = 400207
CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED = 400208
CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS = 400209
UNAUTHORIZED = 401002
NOT_FOUND = 404201
OPERATION_NOT_FOUND = 404202
PRECONDITION_FAILED = 412002
PAYLOAD_TOO_LARGE = 413001
INTERNAL_ERROR = 500000
