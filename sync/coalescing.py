"""Coalesce concurrent work on one key: at most one run in flight and one queued behind it.

A caller is answered by a run that started after it arrived, so its change is included;
ten events for one device in quick succession cost two runs, not ten writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    def __init__(self) -> None:
        self.running: asyncio.Future[T] | None = None
        self.queued: asyncio.Future[T] | None = None


class Coalescer(Generic[T]):
    def __init__(self) -> None:
        self._slots: dict[str, _Slot[T]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        slot = self._slots.setdefault(key, _Slot())
        if slot.running is None:
            slot.running = asyncio.ensure_future(self._drive(key, slot, work))
            return await asyncio.shield(slot.running)
        if slot.queued is None:
            slot.queued = asyncio.get_running_loop().create_future()
        return await asyncio.shield(slot.queued)

    async def _drive(self, key: str, slot: _Slot[T], work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        finally:
            queued, slot.queued = slot.queued, None
            if queued is None:
                slot.running = None
                self._slots.pop(key, None)
            else:
                slot.running = asyncio.ensure_future(self._drive(key, slot, work))
                _chain(slot.running, queued)


def _chain(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    def copy(done: asyncio.Future[T]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
