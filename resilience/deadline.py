"""A request's latency budget, shared by every call it makes (contextvars, so it follows awaits).

DPS's webhook timeout is unpublished; AWS's equivalent hook allows 5 s. The webhook sets a
budget (4 s by default) and every retried call stops when the budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


@contextmanager
def request_budget(seconds: float) -> Iterator[None]:
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(default: float) -> float:
    """Seconds left in the current request's budget, or `default` outside a request."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return min(default, max(0.0, deadline - time.monotonic()))
