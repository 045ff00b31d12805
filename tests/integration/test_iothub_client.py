"""The app's IoT Hub client (azure-iot-hub SDK underneath) against the IoT Hub emulator."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential

from devstack.identity.bad_tokens import BadTokens
from devstack.processes import stop_children
from iothub_client import (
    DeviceNotFound,
    HubAccessDenied,
    HubConnections,
    HubRequestRejected,
    HubThrottled,
    HubUnavailable,
    TwinPatch,
    TwinPreconditionFailed,
    UnknownHub,
    string_literal,
)
from iothub_client.sdk_adapter import SdkIotHubRegistry
from resilience.hub_breakers import BreakerGuardedIotHubRegistry
from resilience.hub_rate_limit import RateLimitedIotHubRegistry
from tests.integration.identity_fixtures import managed_identity_env, start_identity_service
from tests.integration.iothub_fixtures import (
    HUB_EU,
    HUB_US,
    RunningIotHubEmulator,
    iothub_emulator,
    start_iothub_emulator,
)

__all__ = ["iothub_emulator"]


def registry_for_hub(emulator: RunningIotHubEmulator, hub: str = HUB_US) -> SdkIotHubRegistry:
    """A registry of the one hub an emulator of its own serves."""
    return SdkIotHubRegistry(
        HubConnections.from_connection_strings({hub: emulator.connection_string(hub)}),
        timeout_seconds=5,
        ca_bundle=emulator.ca_cert,
    )


def registry_for(emulator: RunningIotHubEmulator, **overrides: str) -> SdkIotHubRegistry:
    strings = {hub: emulator.connection_string(hub) for hub in (HUB_US, HUB_EU)}
    strings.update(overrides)
    return SdkIotHubRegistry(
        HubConnections.from_connection_strings(strings),
        timeout_seconds=5,
        ca_bundle=emulator.ca_cert,
    )


@pytest.fixture(scope="module")
def registry(iothub_emulator: RunningIotHubEmulator) -> SdkIotHubRegistry:
    return registry_for(iothub_emulator)


def new_device(emulator: RunningIotHubEmulator, hub: str = HUB_US) -> str:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    emulator.registry_manager(hub).create_device_with_certificate_authority(device_id, "enabled")
    return device_id


async def test_twins_read_and_update_with_their_etag(iothub_emulator, registry):
    device_id = new_device(iothub_emulator)
    twin = await registry.get_twin(HUB_US, device_id)
    assert (twin.device_id, twin.hub, twin.tags) == (device_id, HUB_US, {})
    updated = await registry.update_twin(
        HUB_US,
        device_id,
        TwinPatch(tags={"assetId": "AST-1"}, desired={"rolePermissions": {"role": "sensor"}}),
        etag=twin.etag,
    )
    assert updated.etag != twin.etag
    assert updated.version == (twin.version or 0) + 1
    assert updated.tags == {"assetId": "AST-1"}
    assert updated.desired == {"rolePermissions": {"role": "sensor"}}
    assert "$metadata" not in updated.desired
    assert updated.desired_version is not None

    cleared = await registry.update_twin(
        HUB_US, device_id, TwinPatch(desired={"rolePermissions": None}), etag=None
    )
    assert cleared.desired == {}
    assert cleared.tags == {"assetId": "AST-1"}


async def test_a_stale_etag_is_precondition_failed(iothub_emulator, registry):
    device_id = new_device(iothub_emulator)
    twin = await registry.get_twin(HUB_US, device_id)
    await registry.update_twin(HUB_US, device_id, TwinPatch(tags={"a": 1}), etag=twin.etag)
    with pytest.raises(TwinPreconditionFailed, match="412"):
        await registry.update_twin(HUB_US, device_id, TwinPatch(tags={"a": 2}), etag=twin.etag)
    assert (await registry.get_twin(HUB_US, device_id)).tags == {"a": 1}


async def test_devices_are_read_disabled_and_deleted(iothub_emulator, registry):
    device_id = new_device(iothub_emulator, HUB_EU)
    device = await registry.get_device(HUB_EU, device_id)
    assert (device.status, device.authentication_type) == ("enabled", "certificateAuthority")
    disabled = await registry.disable_device(HUB_EU, device_id)
    assert disabled.status == "disabled"
    assert disabled.authentication_type == "certificateAuthority"
    assert (await registry.disable_device(HUB_EU, device_id)).status == "disabled"
    await registry.delete_device(HUB_EU, device_id)
    with pytest.raises(DeviceNotFound, match="DeviceNotFound"):
        await registry.get_device(HUB_EU, device_id)
    with pytest.raises(DeviceNotFound):
        await registry.get_twin(HUB_EU, device_id)


async def test_disabling_keeps_a_sas_device_on_sas(iothub_emulator, registry):
    device_id = f"sas-{uuid.uuid4().hex[:8]}"
    iothub_emulator.registry_manager(HUB_US).create_device_with_sas(
        device_id, None, None, "enabled"
    )
    disabled = await registry.disable_device(HUB_US, device_id)
    assert (disabled.status, disabled.authentication_type) == ("disabled", "sas")


async def test_enabling_undoes_a_disable_and_keeps_the_authentication(iothub_emulator, registry):
    ca_device = new_device(iothub_emulator, HUB_EU)
    sas_device = f"sas-{uuid.uuid4().hex[:8]}"
    iothub_emulator.registry_manager(HUB_EU).create_device_with_sas(
        sas_device, None, None, "enabled"
    )
    for device_id, auth in ((ca_device, "certificateAuthority"), (sas_device, "sas")):
        disabled = await registry.disable_device(HUB_EU, device_id)
        enabled = await registry.enable_device(HUB_EU, device_id)
        assert (enabled.status, enabled.authentication_type) == ("enabled", auth)
        assert enabled.etag != disabled.etag
        assert enabled.generation_id == disabled.generation_id
        again = await registry.enable_device(HUB_EU, device_id)
        assert (again.status, again.etag) == ("enabled", enabled.etag), "a no-op when enabled"
        assert (await registry.get_twin(HUB_EU, device_id)).status == "enabled"
    with pytest.raises(DeviceNotFound):
        await registry.enable_device(HUB_EU, f"missing-{uuid.uuid4().hex[:8]}")


async def test_a_stale_etag_on_delete_is_refused(iothub_emulator, registry):
    device_id = new_device(iothub_emulator)
    before = await registry.get_device(HUB_US, device_id)
    await registry.disable_device(HUB_US, device_id)
    with pytest.raises(TwinPreconditionFailed):
        await registry.delete_device(HUB_US, device_id, etag=before.etag)
    assert (await registry.get_device(HUB_US, device_id)).status == "disabled"


async def test_a_wrong_key_is_access_denied_and_never_printed(iothub_emulator):
    good = iothub_emulator.connection_string(HUB_US)
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ=="
    bad = good.rsplit("SharedAccessKey=", 1)[0] + f"SharedAccessKey={wrong_key}"
    registry = registry_for(iothub_emulator, **{HUB_US: bad})
    with pytest.raises(HubAccessDenied, match="401") as caught:
        await registry.get_twin(HUB_US, "anything")
    assert wrong_key not in str(caught.value)


async def test_an_unconfigured_hub_is_named(registry):
    with pytest.raises(UnknownHub, match=r"hub-ap-south\.azure-devices\.net"):
        await registry.get_twin("hub-ap-south.azure-devices.net", "d")


async def test_a_fault_is_unavailable_at_once_because_sdk_retries_are_off(
    iothub_emulator, registry
):
    device_id = new_device(iothub_emulator)
    with iothub_emulator.http(HUB_US) as http:
        rule = {"status": 503, "count": 1, "pathPrefix": f"/twins/{device_id}"}
        assert http.post("/devstack/faults", json=rule).status_code < 300
    started = time.perf_counter()
    with pytest.raises(HubUnavailable):
        await registry.get_twin(HUB_US, device_id)
    # urllib3 would otherwise retry a 503 four times over ~5 s.
    assert time.perf_counter() - started < 2.0
    assert (await registry.get_twin(HUB_US, device_id)).device_id == device_id


async def test_a_hub_that_keeps_failing_opens_its_circuit_and_is_left_alone(iothub_emulator):
    registry = BreakerGuardedIotHubRegistry(
        registry_for(iothub_emulator),
        hubs=(HUB_US, HUB_EU),
        fail_max=3,
        reset_timeout_seconds=60,
    )
    device_id = new_device(iothub_emulator)
    with iothub_emulator.http(HUB_US) as http:
        rule = {"status": 503, "count": 5, "pathPrefix": f"/twins/{device_id}"}
        assert http.post("/devstack/faults", json=rule).status_code < 300
        for _ in range(3):
            with pytest.raises(HubUnavailable) as failure:
                await registry.get_twin(HUB_US, device_id)
            assert "circuit" not in str(failure.value)
        with pytest.raises(HubUnavailable, match="circuit open"):
            await registry.get_twin(HUB_US, device_id)
        [left] = http.get("/devstack/faults").json()["faults"]
        http.delete("/devstack/faults")
    assert left["count"] == 2, "the open circuit kept the fourth call off the hub"
    other = new_device(iothub_emulator, HUB_EU)
    assert (await registry.get_twin(HUB_EU, other)).device_id == other


async def test_a_closed_port_is_unavailable(iothub_emulator):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = f"HostName=127.0.0.1:{port};SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"
    registry = registry_for(iothub_emulator, **{HUB_US: conn})
    with pytest.raises(HubUnavailable):
        await registry.get_twin(HUB_US, "d")


async def test_concurrent_calls_share_no_session_across_threads(iothub_emulator, registry):
    device_ids = [new_device(iothub_emulator) for _ in range(4)]
    twins = await asyncio.gather(*(registry.get_twin(HUB_US, device_ids[n % 4]) for n in range(40)))
    assert {twin.device_id for twin in twins} == set(device_ids)


async def test_calls_keep_their_connection_alive_instead_of_a_handshake_each(iothub_emulator):
    """msrest closes its session after every call unless keep_alive is set: a TLS handshake
    per twin read or write, which bounded sync throughput."""
    registry = registry_for(iothub_emulator)  # its own sessions
    device_id = new_device(iothub_emulator, HUB_EU)

    def connections() -> int:
        with iothub_emulator.http(HUB_EU) as http:
            count: int = http.get("/devstack/stats").json()["connections"]
            return count

    before = connections()
    for _ in range(20):
        await registry.get_twin(HUB_EU, device_id)
    opened = connections() - before - 1  # less the second stats call's own connection
    assert 1 <= opened <= 3, f"20 sequential calls opened {opened} connections"


class _StaticToken:
    """Stands in for azure-identity's ManagedIdentityCredential (get_token is its contract)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.mark.parametrize("works", [True, False])
async def test_managed_identity_sends_a_bearer_token(iothub_emulator, works):
    device_id = new_device(iothub_emulator)
    issuer = iothub_emulator.token_issuer()
    audience = "https://iothubs.azure.net"
    good = issuer.issue(audience).access_token
    credential = _StaticToken(good if works else BadTokens(issuer).signed_by_another_key(audience))
    registry = SdkIotHubRegistry(
        HubConnections.managed_identity([HUB_US], {HUB_US: iothub_emulator.hub(HUB_US).host_name}),
        timeout_seconds=5,
        ca_bundle=iothub_emulator.ca_cert,
        credential_factory=lambda: credential,
    )
    if works:
        assert (await registry.get_twin(HUB_US, device_id)).device_id == device_id
    else:
        with pytest.raises(HubAccessDenied):
            await registry.get_twin(HUB_US, device_id)
    assert ("https://iothubs.azure.net/.default",) in credential.scopes


async def test_managed_identity_tokens_come_from_the_identity_service(iothub_emulator):
    """The app's registry with a real ManagedIdentityCredential, as on Azure."""
    device_id = new_device(iothub_emulator)
    base = iothub_emulator.identity_dir.parent
    identity = start_identity_service(base / "identity-run", iothub_emulator.identity_dir)
    try:
        with managed_identity_env(identity):
            registry = SdkIotHubRegistry(
                HubConnections.managed_identity(
                    [HUB_US], {HUB_US: iothub_emulator.hub(HUB_US).host_name}
                ),
                timeout_seconds=5,
                ca_bundle=iothub_emulator.ca_cert,
                credential_factory=ManagedIdentityCredential,
            )
            assert (await registry.get_twin(HUB_US, device_id)).device_id == device_id
    finally:
        stop_children([identity.child])


@pytest.fixture(scope="module")
def slow_hub(tmp_path_factory) -> Iterator[RunningIotHubEmulator]:
    base = tmp_path_factory.mktemp("slow-hub")
    emulator = start_iothub_emulator(
        base / "run",
        base / "data" / "iothub",
        hubs=((HUB_US, 0),),
        extra_args=["--twin-updates-per-second", "2"],
    )
    yield emulator
    stop_children([emulator.child])


async def test_over_the_twin_update_limit_is_throttled_with_retry_after(slow_hub):
    registry = SdkIotHubRegistry(
        HubConnections.from_connection_strings({HUB_US: slow_hub.connection_string(HUB_US)}),
        timeout_seconds=5,
        ca_bundle=slow_hub.ca_cert,
    )
    device_id = new_device(slow_hub)
    results = await asyncio.gather(
        *(
            registry.update_twin(HUB_US, device_id, TwinPatch(tags={"n": n}), etag=None)
            for n in range(8)
        ),
        return_exceptions=True,
    )
    throttled = [r for r in results if isinstance(r, HubThrottled)]
    assert throttled, results
    assert all(r.retry_after is not None and r.retry_after >= 1 for r in throttled)
    assert len(throttled) < len(results)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, HubThrottled)]


PAGE_SIZE = 4
PENDING_BEFORE_2026 = (
    "SELECT * FROM devices WHERE tags.provisioningState = 'pendingReconciliation'"
    " AND tags.pendingSince < '2026-01-01T00:00:00Z'"
)


@pytest.fixture(scope="module")
def paged_hub(tmp_path_factory) -> Iterator[RunningIotHubEmulator]:
    """A hub serving at most PAGE_SIZE twins a query page, whatever the client asks for."""
    base = tmp_path_factory.mktemp("paged-hub")
    emulator = start_iothub_emulator(
        base / "run",
        base / "data" / "iothub",
        hubs=((HUB_US, 0),),
        extra_args=["--query-page-size-max", str(PAGE_SIZE)],
    )
    yield emulator
    stop_children([emulator.child])


async def test_a_query_returns_exactly_the_matching_twins_across_pages(paged_hub):
    registry = registry_for_hub(paged_hub)
    pending = {"provisioningState": "pendingReconciliation"}
    tags_by_kind: dict[str, dict[str, Any]] = {
        "match": {**pending, "pendingSince": "2025-11-30T23:59:59Z"},
        "recent": {**pending, "pendingSince": "2026-01-01T00:00:00Z"},
        "done": {"provisioningState": "provisioned", "pendingSince": "2025-01-01T00:00:00Z"},
        "unstamped": pending,
        "numeric": {**pending, "pendingSince": 20250101},
    }
    counts = {"match": 10, "recent": 3, "done": 3, "unstamped": 2, "numeric": 2}
    expected: set[str] = set()
    for kind, count in counts.items():
        for _ in range(count):
            device_id = new_device(paged_hub)
            await registry.update_twin(
                HUB_US, device_id, TwinPatch(tags=tags_by_kind[kind]), etag=None
            )
            if kind == "match":
                expected.add(device_id)

    found = await registry.query_twins(HUB_US, PENDING_BEFORE_2026)
    assert sorted(twin.device_id for twin in found) == sorted(expected)
    assert len(found) > PAGE_SIZE, "the answer spanned several pages"
    assert all(twin.hub == HUB_US and twin.etag and twin.version for twin in found)
    assert all(twin.tags == tags_by_kind["match"] for twin in found)

    first_six = await registry.query_twins(HUB_US, PENDING_BEFORE_2026, limit=6)
    assert [twin.device_id for twin in first_six] == sorted(expected)[:6]
    everything = await registry.query_twins(HUB_US, "SELECT * FROM devices")
    assert len(everything) == sum(counts.values())


async def test_a_query_the_hub_does_not_understand_is_rejected_without_its_text(
    iothub_emulator, registry
):
    query = "SELECT * FROM devices WHERE tags.secretMarker IN ['a']"
    with pytest.raises(HubRequestRejected) as rejected:
        await registry.query_twins(HUB_US, query)
    assert rejected.value.status == 400
    assert "BadRequest" in str(rejected.value)
    assert "secretMarker" not in str(rejected.value)


async def test_queries_and_enables_pass_the_breaker_and_the_rate_limiter(iothub_emulator):
    hubs = (HUB_US, HUB_EU)
    registry = RateLimitedIotHubRegistry(
        BreakerGuardedIotHubRegistry(registry_for(iothub_emulator), hubs=hubs),
        hubs=hubs,
        twin_updates_per_second=50,
    )
    device_id = new_device(iothub_emulator, HUB_EU)
    marker = uuid.uuid4().hex
    await registry.update_twin(HUB_EU, device_id, TwinPatch(tags={"marker": marker}), etag=None)
    await registry.disable_device(HUB_EU, device_id)
    assert (await registry.enable_device(HUB_EU, device_id)).status == "enabled"
    query = "SELECT * FROM devices WHERE tags.marker = " + string_literal(marker)  # noqa: S608
    [twin] = await registry.query_twins(HUB_EU, query)
    assert (twin.device_id, twin.status) == (device_id, "enabled")
