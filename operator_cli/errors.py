"""The CLI's errors: each carries the exit code and a message fit for an operator's terminal.

Messages never carry a connection string, a key or a message body.
"""

from __future__ import annotations


class OperatorError(Exception):
    """The command could not do what was asked (exit code 1)."""

    exit_code = 1


class ConfigurationError(OperatorError):
    """Missing or wrong configuration: connection, queue name, encoding (exit code 2)."""

    exit_code = 2


class QueueServiceError(OperatorError):
    """The queue service could not be reached or refused a call; `code` is its error code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TableServiceError(OperatorError):
    """The table service could not be reached or refused a call."""
