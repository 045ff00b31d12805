"""One delivery of trigger input to a function, as the Functions host runs it for a trigger.

The trigger argument is built inside the invocation (a decoding error, or a function the
worker could not load, is a failed execution, not a host error); the Invoker logs the
Executing and Executed lines; a function retry policy, if given, runs the function again with
the retry context until it succeeds or the policy gives up. The caller decides what giving up
means for its trigger (a checkpoint anyway, a message back on its queue, the poison queue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.errors import InvocationFailed
from devstack.function_host.invocation import (
    DeferredValue,
    DevRetryContext,
    DevRpcException,
    Invoker,
)
from devstack.function_host.retry_policy import RetryPolicy

logger = logging.getLogger("devstack.function_host.delivery")
_TICKS_PER_SECOND = 10_000_000


def timespan(seconds: float) -> str:
    """A delay as .NET prints a TimeSpan: 00:00:01, 00:00:00.5000000."""
    whole, fraction = divmod(round(seconds * _TICKS_PER_SECOND), _TICKS_PER_SECOND)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}.{fraction:07d}" if fraction else text


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended: whether the last attempt succeeded, after how many attempts."""

    succeeded: bool
    attempts: int
    # What the last failed attempt raised (None on success).
    error: BaseException | None = None


async def deliver(
    invoker: Invoker,
    spec: FunctionSpec,
    argument: Callable[[], Any],
    *,
    reason: str,
    details: str,
    trace_parent: str | None = None,
    retry: RetryPolicy | None = None,
) -> Outcome:
    """Invoke `spec` with what `argument` builds; retry per `retry` until success or give-up."""
    retry_context: DevRetryContext | None = None
    attempt = 0
    while True:
        attempt += 1
        try:
            await invoker.invoke(
                spec,
                DeferredValue(argument),
                reason=reason,
                trace_parent=trace_parent,
                retry_context=retry_context,
                details=details,
            )
            return Outcome(succeeded=True, attempts=attempt)
        except InvocationFailed as exc:
            retry_count = attempt  # the number of the retry that would come next
            if retry is None or not retry.allows(retry_count):
                return Outcome(succeeded=False, attempts=attempt, error=exc.error)
            delay = retry.delay(retry_count)
            logger.info(
                "Waiting for `%s` before retrying function execution. Next attempt: '%d'. "
                "Max retry count: '%d'",
                timespan(delay),
                retry_count,
                retry.max_retry_count,
                extra={"function": spec.name},
            )
            retry_context = DevRetryContext(
                retry_count=retry_count,
                max_retry_count=retry.max_retry_count,
                exception=DevRpcException.from_error(exc.error),
            )
            await asyncio.sleep(delay)
