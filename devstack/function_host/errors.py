"""Errors of the dev functions host, one place for all of them."""

from __future__ import annotations


class StartupError(Exception):
    """The host cannot start (config file, app import or indexing); the message says why."""


class RouteTemplateError(StartupError):
    """An HTTP trigger route template cannot be parsed or uses an unknown constraint."""


class BodyTooLarge(Exception):
    """A request body exceeded the configured cap; answered 413 without buffering it all."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class TriggerInputError(ValueError):
    """An input for a non-HTTP trigger could not be converted to the trigger's Python type."""


class InvocationFailed(Exception):
    """The user function raised; the traceback is already logged with the invocation id."""

    def __init__(
        self, function_name: str, invocation_id: str, error: BaseException | None = None
    ) -> None:
        super().__init__(f"function {function_name} failed (invocation {invocation_id})")
        self.function_name = function_name
        self.invocation_id = invocation_id
        # What the function raised, for the retry context of the next attempt.
        self.error = error
