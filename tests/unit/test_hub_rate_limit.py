"""The per-hub write limiter, on a virtual clock: no test here depends on real time."""

import pytest

from iothub_client import HubThrottled, TwinPatch, UnknownHub
from resilience.hub_rate_limit import RateLimitedIotHubRegistry, TokenBucket
from tests.unit.fakes import FakeIotHubRegistry

HUB = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_bucket_allows_a_burst_then_paces_at_the_rate():
    clock = VirtualClock()
    bucket = TokenBucket(50, clock=clock, sleep=clock.sleep)
    for _ in range(150):
        await bucket.acquire()
    # 50 from the full bucket, then 100 more at 50/s: two seconds of virtual time.
    assert clock.now == pytest.approx(2.0)
    assert all(wait == pytest.approx(0.02) for wait in clock.sleeps)


async def test_a_pause_holds_everyone_until_retry_after():
    clock = VirtualClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    bucket.pause(3.0)
    await bucket.acquire()
    assert clock.now >= 3.0


class ThrottlingHub(FakeIotHubRegistry):
    def __init__(self, refusals: int, retry_after: float | None = 2.0) -> None:
        super().__init__()
        self.refusals = refusals
        self.retry_after = retry_after
        self.attempts = 0

    async def update_twin(self, hub, device_id, patch, *, etag):
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise HubThrottled("429", retry_after=self.retry_after)
        return await super().update_twin(hub, device_id, patch, etag=etag)


async def test_a_429_is_backpressure_then_the_write_goes_through():
    clock = VirtualClock()
    inner = ThrottlingHub(refusals=2)
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner, hubs=[HUB], twin_updates_per_second=50, clock=clock, sleep=clock.sleep
    )
    twin = await registry.update_twin(HUB, "d1", TwinPatch(tags={"a": 1}), etag=None)
    assert twin.tags == {"a": 1}
    assert inner.attempts == 3
    assert clock.now >= 4.0  # two Retry-After pauses of 2 s
    assert len(inner.writes) == 1


async def test_throttling_past_the_deadline_surfaces_the_429():
    clock = VirtualClock()
    inner = ThrottlingHub(refusals=100, retry_after=5.0)
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner,
        hubs=[HUB],
        twin_updates_per_second=50,
        max_wait_seconds=12,
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(HubThrottled):
        await registry.update_twin(HUB, "d1", TwinPatch(tags={"a": 1}), etag=None)
    assert clock.now <= 12
    assert inner.writes == []


async def test_hubs_have_their_own_buckets():
    clock = VirtualClock()
    inner = FakeIotHubRegistry()
    registry = RateLimitedIotHubRegistry(
        inner, hubs=[HUB, WEST], twin_updates_per_second=5, clock=clock, sleep=clock.sleep
    )
    assert registry.bucket(HUB) is registry.bucket(HUB.upper())
    assert registry.bucket(HUB) is not registry.bucket(WEST)
    assert registry.registry_bucket(HUB) is not registry.registry_bucket(WEST)


async def test_a_forged_hub_is_unknown_and_grows_no_buckets():
    clock = VirtualClock()
    inner = FakeIotHubRegistry()
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner, hubs=[HUB], twin_updates_per_second=5, clock=clock, sleep=clock.sleep
    )
    await registry.update_twin(HUB, "d1", TwinPatch(tags={"a": 1}), etag=None)
    await registry.disable_device(HUB, "d1")
    for n in range(10_000):
        forged = f"forged-{n}.azure-devices.net"
        with pytest.raises(UnknownHub):
            await registry.update_twin(forged, "d1", TwinPatch(tags={"a": 1}), etag=None)
        with pytest.raises(UnknownHub):
            await registry.disable_device(forged, "d1")
    for call in (registry.get_twin, registry.get_device, registry.delete_device):
        with pytest.raises(UnknownHub):
            await call("forged.azure-devices.net", "d1")
    with pytest.raises(UnknownHub):
        registry.bucket("forged.azure-devices.net")
    with pytest.raises(UnknownHub):
        registry.registry_bucket("forged.azure-devices.net")
    assert list(registry._buckets) == [HUB]
    assert list(registry._registry_buckets) == [HUB]
    assert len(inner.writes) == 1
    assert clock.now == 0, "a forged hub waited for no token"


def test_an_unknown_hub_error_shows_a_bounded_name():
    registry = RateLimitedIotHubRegistry(
        FakeIotHubRegistry(), hubs=[HUB], twin_updates_per_second=5
    )
    with pytest.raises(UnknownHub) as caught:
        registry.bucket("x" * 10_000)
    assert len(str(caught.value)) < 200


class ThrottledQueries(FakeIotHubRegistry):
    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.attempts = 0

    async def query_twins(self, hub, query, *, limit=1000):
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise HubThrottled("429", retry_after=3.0)
        return await super().query_twins(hub, query, limit=limit)


async def test_enabling_spends_the_registry_quota_like_disabling():
    clock = VirtualClock()
    inner = FakeIotHubRegistry()
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner,
        hubs=[HUB],
        twin_updates_per_second=50,
        registry_ops_per_minute=60,
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(3):
        await registry.disable_device(HUB, "d1")
        await registry.enable_device(HUB, "d1")
    # A burst of 5, then one a second: the sixth registry write waited a second.
    assert clock.now == pytest.approx(1.0)
    assert (await inner.get_device(HUB, "d1")).status == "enabled"
    assert list(registry._buckets) == [], "no twin-update token was spent"


async def test_queries_have_their_own_small_budget_apart_from_writes():
    clock = VirtualClock()
    inner = FakeIotHubRegistry()
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner,
        hubs=[HUB],
        twin_updates_per_second=50,
        queries_per_minute=6,
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(5):
        await registry.query_twins(HUB, "SELECT * FROM devices")
    # A burst of 3, then one every 10 s.
    assert clock.now == pytest.approx(20.0)
    started = clock.now
    await registry.update_twin(HUB, "d1", TwinPatch(tags={"a": 1}), etag=None)
    await registry.disable_device(HUB, "d1")
    assert clock.now == started, "writes do not wait behind queries"


async def test_a_throttled_query_is_retried_after_the_pause():
    clock = VirtualClock()
    inner = ThrottledQueries(refusals=2)
    inner.add_device(HUB, "d1")
    registry = RateLimitedIotHubRegistry(
        inner, hubs=[HUB], twin_updates_per_second=50, clock=clock, sleep=clock.sleep
    )
    found = await registry.query_twins(HUB, "SELECT * FROM devices", limit=10)
    assert [twin.device_id for twin in found] == ["d1"]
    assert inner.attempts == 3
    assert clock.now >= 6.0
