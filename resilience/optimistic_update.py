"""Read, plan, write with the version read, and on a stale version read again and re-plan.

The one loop behind every conditional write the app makes (a twin with its etag, an asset with
If-Match): the plan is pure and always made from what was last read, so a concurrent writer's
change is never overwritten, only planned around. I/O is the caller's, through `write` and
`reread`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")
P = TypeVar("P")


@dataclass(frozen=True)
class Settled(Generic[S, P]):
    """The state last read, the plan made from it, and whether that plan was written."""

    state: S
    plan: P
    written: bool


async def optimistic_update(
    state: S,
    *,
    plan: Callable[[S], P],
    needs_write: Callable[[P], bool],
    write: Callable[[S, P], Awaitable[None]],
    reread: Callable[[S], Awaitable[S]],
    stale: type[Exception],
    attempts: int,
    give_up: Callable[[], Exception],
) -> Settled[S, P]:
    """Plan from `state`; write if the plan needs it; on `stale`, reread and plan again.

    Returns once a plan needs no write or its write stood; raises give_up() after `attempts`
    writes lost to a concurrent writer.
    """
    for _attempt in range(attempts):
        planned = plan(state)
        if not needs_write(planned):
            return Settled(state, planned, written=False)
        try:
            await write(state, planned)
        except stale:
            state = await reread(state)
            continue
        return Settled(state, planned, written=True)
    raise give_up()
