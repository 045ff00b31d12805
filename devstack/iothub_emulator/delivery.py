"""Delivery of one hub's twin change events to an HTTP endpoint, standing in for the built-in
Event Hub endpoint plus the Functions Event Hub trigger.

Batches of up to 100 events, flushed 50 ms after the first is waiting; one request in flight,
in sequence order; anything but 2xx keeps the batch and retries with capped backoff. The
cursor lives in the hub's database, so pending events survive a restart.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from .store import HubStore

BATCH_SIZE = 100
LINGER_SECONDS = 0.05
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 30.0

log = logging.getLogger(__name__)


class EventDelivery:
    """Posts `{"events": [...]}` to `url` until everything stored has been accepted."""

    def __init__(self, hub_name: str, store: HubStore, url: str) -> None:
        self._hub_name = hub_name
        self._store = store
        self.url = url
        self._changed = asyncio.Event()
        self._failing = False

    def wake(self) -> None:
        """Called after every stored event."""
        self._changed.set()

    def _pending(self) -> int:
        return self._store.last_sequence_number - self._store.delivered

    async def run(self, session: aiohttp.ClientSession) -> None:
        backoff = INITIAL_BACKOFF_SECONDS
        while True:
            if self._pending() == 0:
                self._changed.clear()
                await self._changed.wait()
                continue
            if not self._failing:
                await self._linger()
            batch = self._store.events_after(self._store.delivered, BATCH_SIZE)
            if not batch:
                continue
            first, last = batch[0][0], batch[-1][0]
            if await self._post(session, [event for _, event in batch], first, last):
                self._store.mark_delivered(last)
                backoff = INITIAL_BACKOFF_SECONDS
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _linger(self) -> None:
        """Wait until a full batch is waiting or LINGER_SECONDS have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        while self._pending() < BATCH_SIZE:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    async def _post(
        self, session: aiohttp.ClientSession, batch: list[str], first: int, last: int
    ) -> bool:
        payload = '{"events":[' + ",".join(batch) + "]}"
        try:
            async with session.post(
                self.url,
                data=payload.encode("utf-8"),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            ) as response:
                await response.read()
                ok = 200 <= response.status < 300
                outcome = f"answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, outcome = False, f"failed: {type(exc).__name__}: {exc}"
        if ok and self._failing:
            log.warning("%s: events delivered again to %s", self._hub_name, self.url)
        elif not ok and not self._failing:
            log.warning(
                "%s: delivering events %d-%d to %s %s; retrying",
                self._hub_name,
                first,
                last,
                self.url,
                outcome,
            )
        self._failing = not ok
        return ok
