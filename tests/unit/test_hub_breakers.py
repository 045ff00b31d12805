"""A breaker per IoT hub: only hub outages count, an open hub fails fast, others carry on."""

from __future__ import annotations

from typing import Any

import pytest

from iothub_client import (
    DeviceNotFound,
    HubThrottled,
    HubUnavailable,
    TwinPatch,
    TwinPreconditionFailed,
    UnknownHub,
)
from resilience.hub_breakers import BreakerGuardedIotHubRegistry
from tests.unit.fakes import FakeIotHubRegistry

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


class FlakyHubs(FakeIotHubRegistry):
    """Raises the next queued error of a hub, if any, on every call; counts the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, list[Exception]] = {}
        self.calls: list[str] = []

    def _maybe_fail(self, hub: str) -> None:
        self.calls.append(hub)
        errors = self.failing.get(hub)
        if errors:
            raise errors.pop(0)

    async def get_twin(self, hub: str, device_id: str) -> Any:
        self._maybe_fail(hub)
        return await super().get_twin(hub, device_id)

    async def update_twin(self, hub: str, device_id: str, patch: TwinPatch, *, etag: Any) -> Any:
        self._maybe_fail(hub)
        return await super().update_twin(hub, device_id, patch, etag=etag)


def hubs() -> tuple[FlakyHubs, BreakerGuardedIotHubRegistry]:
    inner = FlakyHubs()
    for hub in (EAST, WEST):
        inner.add_device(hub, "d1")
    return inner, BreakerGuardedIotHubRegistry(
        inner, hubs=(EAST, WEST), fail_max=3, reset_timeout_seconds=60
    )


async def test_a_failing_hub_opens_and_then_fails_fast_without_being_called():
    inner, guarded = hubs()
    inner.failing[EAST] = [HubUnavailable("503")] * 3
    for _ in range(3):
        with pytest.raises(HubUnavailable, match="503"):
            await guarded.get_twin(EAST, "d1")
    with pytest.raises(HubUnavailable, match="circuit open"):
        await guarded.update_twin(EAST, "d1", TwinPatch(tags={"a": 1}), etag=None)
    assert inner.calls == [EAST] * 3, "the open hub was not called"
    assert guarded.breaker(EAST).state == "open"
    assert guarded.metrics.rejected["iot-hub:" + EAST] == 1


async def test_other_hubs_are_unaffected_by_one_open_circuit():
    inner, guarded = hubs()
    inner.failing[EAST] = [HubUnavailable("timeout")] * 3
    for _ in range(3):
        with pytest.raises(HubUnavailable):
            await guarded.get_twin(EAST, "d1")
    twin = await guarded.get_twin(WEST, "d1")
    assert twin.device_id == "d1"
    assert guarded.breaker(WEST).state == "closed"


@pytest.mark.parametrize(
    "answer",
    [DeviceNotFound("404"), TwinPreconditionFailed("412"), HubThrottled("429", retry_after=1)],
)
async def test_answers_of_a_working_hub_never_open_it(answer: Exception):
    inner, guarded = hubs()
    inner.failing[EAST] = [answer] * 5
    for _ in range(5):
        with pytest.raises(type(answer)):
            await guarded.get_twin(EAST, "d1")
    assert guarded.breaker(EAST).state == "closed"
    assert (await guarded.get_twin(EAST, "d1")).device_id == "d1"


async def test_a_success_resets_the_count_of_failures():
    inner, guarded = hubs()
    inner.failing[EAST] = [HubUnavailable("503")] * 2
    for _ in range(2):
        with pytest.raises(HubUnavailable):
            await guarded.get_twin(EAST, "d1")
    await guarded.get_twin(EAST, "d1")
    inner.failing[EAST] = [HubUnavailable("503")] * 2
    for _ in range(2):
        with pytest.raises(HubUnavailable):
            await guarded.get_twin(EAST, "d1")
    assert guarded.breaker(EAST).state == "closed"


async def test_a_forged_hub_is_unknown_and_grows_no_breakers():
    inner, guarded = hubs()
    await guarded.get_twin(EAST, "d1")
    before = dict(guarded._breakers)
    for n in range(10_000):
        with pytest.raises(UnknownHub):
            await guarded.get_twin(f"forged-{n}.azure-devices.net", "d1")
    with pytest.raises(UnknownHub):
        guarded.breaker("forged.azure-devices.net")
    assert guarded._breakers == before
    assert len(guarded._breakers) == 1
    assert inner.calls == [EAST], "no forged hub reached the inner registry"


def test_configured_hubs_match_case_insensitively():
    _, guarded = hubs()
    assert guarded.breaker(EAST.upper()) is guarded.breaker(EAST)
    assert guarded.breaker(WEST) is not guarded.breaker(EAST)


class FlakyQueries(FlakyHubs):
    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> Any:
        self._maybe_fail(hub)
        return await super().query_twins(hub, query, limit=limit)

    async def enable_device(self, hub: str, device_id: str) -> Any:
        self._maybe_fail(hub)
        return await super().enable_device(hub, device_id)


async def test_queries_and_enables_are_guarded_like_every_call():
    inner = FlakyQueries()
    inner.add_device(EAST, "d1")
    guarded = BreakerGuardedIotHubRegistry(
        inner, hubs=(EAST,), fail_max=2, reset_timeout_seconds=60
    )
    inner.failing[EAST] = [HubUnavailable("503")] * 2
    for _ in range(2):
        with pytest.raises(HubUnavailable, match="503"):
            await guarded.query_twins(EAST, "SELECT * FROM devices")
    with pytest.raises(HubUnavailable, match="circuit open"):
        await guarded.enable_device(EAST, "d1")
    with pytest.raises(HubUnavailable, match="circuit open"):
        await guarded.query_twins(EAST, "SELECT * FROM devices")
    assert inner.calls == [EAST] * 2


async def test_a_guarded_query_and_enable_pass_through_a_working_hub():
    inner = FlakyQueries()
    inner.add_device(EAST, "d1", tags={"state": "pending"})
    inner.add_device(EAST, "d2")
    guarded = BreakerGuardedIotHubRegistry(inner, hubs=(EAST,))
    await inner.disable_device(EAST, "d1")
    assert (await guarded.enable_device(EAST, "d1")).status == "enabled"
    found = await guarded.query_twins(
        EAST, "SELECT * FROM devices WHERE tags.state = 'pending'", limit=5
    )
    assert [twin.device_id for twin in found] == ["d1"]
    with pytest.raises(UnknownHub):
        await guarded.query_twins("forged.azure-devices.net", "SELECT * FROM devices")


async def test_every_configured_hub_has_a_breaker_to_show_even_before_its_first_call():
    inner, guarded = hubs()
    inner.failing[WEST] = [HubUnavailable("503")] * 3
    for _ in range(3):
        with pytest.raises(HubUnavailable):
            await guarded.get_twin(WEST, "d1")
    listed = guarded.breakers()
    assert [(b.name, b.state) for b in listed] == [
        ("iot-hub:" + WEST, "open"),
        ("iot-hub:" + EAST, "closed"),
    ]
    assert listed[0] is guarded.breaker(WEST), "the live breaker, not a copy"
    assert inner.calls == [WEST] * 3, "listing calls no hub"
