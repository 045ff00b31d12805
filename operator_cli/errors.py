"""The CLI's errors: each carries the exit code and a message fit for an operator's terminal.

Messages never carry a connection string, a key or a message body.
"""

from __future__ import annotations

from app_errors import AppError
from settings import ConfigurationError

CONFIGURATION_EXIT_CODE = 2
"""Missing or wrong configuration (the app's own ConfigurationError): connection, queue name,
encoding."""


class OperatorError(AppError):
    """The command could not do what was asked (exit code 1)."""

    exit_code = 1


class QueueServiceError(OperatorError):
    """The queue service could not be reached or refused a call; `code` is its error code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TableServiceError(OperatorError):
    """The table service could not be reached or refused a call."""


__all__ = [
    "CONFIGURATION_EXIT_CODE",
    "ConfigurationError",
    "OperatorError",
    "QueueServiceError",
    "TableServiceError",
]
