"""Deliver outbox events to Event Grid webhook subscribers, the way Event Grid delivers them.

One delivery loop per subscription, each with its own schedule: a subscriber that fails or
hangs delays only its own events. aiohttp rather than httpx: see asset_client/http_adapter.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from .change_events import DATA_VERSION, METADATA_VERSION, EventSchema
from .delivery_policy import DeadLetterReason, DeliveryPolicy, Verdict, judge
from .model import format_epoch
from .outbox import Attempt, DueDelivery, Subscription
from .store import AssetStore

logger = logging.getLogger("devstack.asset_service.events")

_SECRET_PARAMETERS = frozenset({"code", "sig", "key", "sas"})


def check_endpoint(url: str) -> str:
    """The url if it is an absolute http(s) URL, else ValueError naming it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"event grid url must be an absolute http(s) URL, not {url!r}")
    return url


def subscription_name(endpoint: str, index: int) -> str:
    """Uppercase like Event Grid's: the Functions webhook's functionName, else by position."""
    for name, value in parse_qsl(urlsplit(endpoint).query):
        if name.lower() == "functionname" and value:
            return value.upper()
    return f"SUBSCRIPTION-{index + 1}"


def redact_endpoint(endpoint: str) -> str:
    """The endpoint with keys (code, sig, ...) and user info masked, for logs and listings."""
    parts = urlsplit(endpoint)
    query = [
        (name, "***" if name.lower() in _SECRET_PARAMETERS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def activate_subscriptions(store: AssetStore, endpoints: Sequence[str]) -> list[Subscription]:
    """Record the configured endpoints as the only active subscriptions, in their order."""
    pairs = [(check_endpoint(url), subscription_name(url, i)) for i, url in enumerate(endpoints)]
    with store.transaction(write=True) as tx:
        return tx.outbox.activate(pairs)


class EventPublisher:
    """Background delivery of committed events; start() and stop() follow the app lifespan."""

    def __init__(
        self,
        store: AssetStore,
        subscriptions: Sequence[Subscription],
        *,
        key: str | None = None,
        policy: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
        schema: EventSchema = EventSchema.EVENT_GRID,
    ) -> None:
        self._store = store
        self._schema = schema
        self._subscriptions = list(subscriptions)
        self._key = key
        self._policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        store.on_events_committed(self.wake)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._subscriptions:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._policy.response_timeout_seconds)
        )
        for subscription in self._subscriptions:
            wakeup = asyncio.Event()
            self._wakeups.append(wakeup)
            self._tasks.append(
                asyncio.create_task(
                    self._run(subscription, wakeup), name=f"deliver-{subscription.name}"
                )
            )

    async def stop(self) -> None:
        """Abandon requests in flight: their events stay pending and go out after a restart."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._wakeups.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """New events are due: safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for wakeup in self._wakeups:
            loop.call_soon_threadsafe(wakeup.set)

    async def _run(self, subscription: Subscription, wakeup: asyncio.Event) -> None:
        limit = self._policy.max_events_per_batch
        while True:
            # Cleared before looking, so a wake-up that comes while we look is not lost.
            wakeup.clear()
            try:
                with self._store.transaction(write=False) as tx:
                    batch = tx.outbox.due(subscription.id, time.time(), limit)
                    next_due = None if batch else tx.outbox.next_due_at(subscription.id)
                if batch:
                    await self._deliver(subscription, batch)
                    continue
            except Exception:
                logger.exception("delivering to %s failed; trying again in 1 s", subscription.name)
                next_due = time.time() + 1
            timeout = None if next_due is None else max(0.0, next_due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)

    def _headers(self, subscription: Subscription, delivery_count: int) -> dict[str, str]:
        headers = {
            "aeg-event-type": "Notification",
            "aeg-delivery-count": str(delivery_count),
            "aeg-subscription-name": subscription.name,
        }
        if self._schema is EventSchema.CLOUD_EVENTS:
            headers["Content-Type"] = "application/cloudevents-batch+json; charset=utf-8"
        else:
            headers["Content-Type"] = "application/json"
            headers["aeg-data-version"] = DATA_VERSION
            headers["aeg-metadata-version"] = METADATA_VERSION
        if self._key is not None:
            headers["aeg-sas-key"] = self._key
        return headers

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        """The HTTP status and, unless it is a 2xx, a description of what went wrong."""
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
        except TimeoutError:
            return None, f"no response within {self._policy.response_timeout_seconds:g} s"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                return None, "connection refused"
            return None, f"cannot connect: {exc}"
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        status = response.status
        if 200 <= status < 300:
            return status, None
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "(unknown status)"
        return status, f"HTTP {status} {phrase}"

    async def _deliver(self, subscription: Subscription, batch: Sequence[DueDelivery]) -> None:
        body = ("[" + ",".join(delivery.event for delivery in batch) + "]").encode()
        headers = self._headers(subscription, batch[0].attempts)
        status, error = await self._post(subscription.endpoint, body, headers)
        now = time.time()
        attempt = Attempt(at=format_epoch(now), http_status=status, error=error)
        verdict = judge(status)
        dead: list[tuple[str, DeadLetterReason]] = []
        with self._store.transaction(write=True) as tx:
            if verdict is Verdict.DELIVERED:
                tx.outbox.delivered(subscription.id, [d.seq for d in batch], attempt)
            elif verdict is Verdict.DEAD_LETTER:
                reason = DeadLetterReason.NON_RETRYABLE_STATUS
                tx.outbox.dead_letter(subscription.id, [d.seq for d in batch], reason, attempt)
                dead = [(d.event_id, reason) for d in batch]
            else:
                for delivery in batch:
                    attempts = delivery.attempts + 1
                    due_at = now + self._policy.retry_delay(attempts, self._rng)
                    gave_up = self._policy.give_up(attempts, delivery.published_at, due_at)
                    if gave_up is None:
                        tx.outbox.retry_later(subscription.id, delivery.seq, due_at, attempt)
                    else:
                        tx.outbox.dead_letter(subscription.id, [delivery.seq], gave_up, attempt)
                        dead.append((delivery.event_id, gave_up))
        for event_id, reason in dead:
            logger.warning(
                "dead-lettered event %s for subscription %s (%s): %s after %s",
                event_id,
                subscription.name,
                redact_endpoint(subscription.endpoint),
                reason.value,
                error,
            )
