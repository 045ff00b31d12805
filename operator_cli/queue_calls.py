"""One SDK call on a storage queue, its failure told as an operator error free of secrets."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from operator_cli.errors import OperatorError, QueueServiceError

T = TypeVar("T")


class QueueMissing(OperatorError):
    """The queue does not exist (yet): for reading, the same as an empty queue."""


async def queue_call(call: Awaitable[T], *, queue: str, source: str) -> T:
    """`source`: where the storage connection came from, named when the service refuses it."""
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        return await call
    except HttpResponseError as exc:
        status = int(getattr(exc, "status_code", None) or 0)
        raw_code = getattr(exc, "error_code", None)
        code = str(getattr(raw_code, "value", raw_code)) if raw_code else None
        if code == "QueueNotFound":
            raise QueueMissing(f"queue {queue} does not exist") from None
        detail = f"queue {queue}: the queue service answered {status or 'nothing'}"
        detail += f" ({code})" if code else ""
        if status in (401, 403):
            detail += f"; check the connection string from {source}"
        raise QueueServiceError(detail, code=code) from None
    except AzureError as exc:
        # The SDK's text may name the account's URL (with a SAS): only the type is shown.
        raise QueueServiceError(
            f"queue {queue}: cannot reach the queue service ({type(exc).__name__}); "
            f"is the storage account from {source} up?"
        ) from None
