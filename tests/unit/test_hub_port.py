"""Every IotHubRegistry we have implements the whole port (mypy checks the assignments), and
the fake behaves as the emulator does for the operations services may call."""

from __future__ import annotations

import pytest

from devstack.iothub_emulator.query import Comparison, parse_query
from iothub_client import HubConnections, HubRequestRejected, IotHubRegistry, string_literal
from iothub_client.sdk_adapter import SdkIotHubRegistry
from resilience.hub_breakers import BreakerGuardedIotHubRegistry
from resilience.hub_rate_limit import RateLimitedIotHubRegistry
from tests.unit.fakes import FakeIotHubRegistry

HUB = "hub-us-east.azure-devices.net"
OTHER = "hub-eu-west.azure-devices.net"
PENDING = (
    "SELECT * FROM devices WHERE tags.provisioningState = 'pendingReconciliation'"
    " AND tags.pendingSince < '2026-01-01T00:00:00Z'"
)


def test_every_registry_implements_the_whole_port():
    fake: IotHubRegistry = FakeIotHubRegistry()
    sdk: IotHubRegistry = SdkIotHubRegistry(HubConnections([]), timeout_seconds=1)
    guarded: IotHubRegistry = BreakerGuardedIotHubRegistry(fake, hubs=[HUB])
    limited: IotHubRegistry = RateLimitedIotHubRegistry(
        guarded, hubs=[HUB], twin_updates_per_second=1
    )
    for registry in (fake, sdk, guarded, limited):
        assert callable(registry.enable_device)
        assert callable(registry.query_twins)


async def test_the_fake_enables_what_it_disabled():
    fake = FakeIotHubRegistry()
    fake.add_device(HUB, "d1")
    assert (await fake.disable_device(HUB, "d1")).status == "disabled"
    assert (await fake.get_twin(HUB, "d1")).status == "disabled"
    assert (await fake.enable_device(HUB, "d1")).status == "enabled"
    assert (await fake.enable_device(HUB, "d1")).status == "enabled"
    assert (await fake.get_twin(HUB, "d1")).status == "enabled"


async def test_the_fake_answers_queries_of_one_hub_with_the_emulators_rules():
    fake = FakeIotHubRegistry()
    state = {"provisioningState": "pendingReconciliation"}
    fake.add_device(HUB, "old-1", tags={**state, "pendingSince": "2025-06-01T00:00:00Z"})
    fake.add_device(HUB, "old-2", tags={**state, "pendingSince": "2025-12-31T23:59:59Z"})
    fake.add_device(HUB, "new", tags={**state, "pendingSince": "2026-02-01T00:00:00Z"})
    fake.add_device(HUB, "no-since", tags=state)
    fake.add_device(HUB, "done", tags={"provisioningState": "provisioned"})
    fake.add_device(OTHER, "elsewhere", tags={**state, "pendingSince": "2025-01-01T00:00:00Z"})
    found = await fake.query_twins(HUB, PENDING)
    assert [twin.device_id for twin in found] == ["old-1", "old-2"]
    assert all(twin.hub == HUB for twin in found)
    assert len(await fake.query_twins(HUB, "SELECT * FROM devices", limit=3)) == 3
    await fake.disable_device(HUB, "done")
    disabled = await fake.query_twins(HUB, "SELECT * FROM devices WHERE status = 'disabled'")
    assert [twin.device_id for twin in disabled] == ["done"]


async def test_the_fake_rejects_a_query_the_emulator_would_not_understand():
    with pytest.raises(HubRequestRejected) as rejected:
        await FakeIotHubRegistry().query_twins(HUB, "SELECT deviceId FROM devices")
    assert rejected.value.status == 400


@pytest.mark.parametrize(
    "value",
    [
        "dev-1",
        "it's",
        "x' OR tags.a = 'a",
        "back\\slash\\",
        "\\' OR deviceId != '",
        'double "quotes"',
        "line\nbreak\ttab\x00nul",
        "émoji 😀",
        "",
    ],
)
def test_a_string_literal_is_one_literal_whatever_the_value(value: str):
    query = parse_query(
        "SELECT * FROM devices WHERE deviceId = " + string_literal(value)  # noqa: S608
    )
    assert query.where == Comparison(("deviceId",), "=", value)
