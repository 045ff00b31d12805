"""Replacement approvals through DPS with Microsoft's Node device client, on the whole stack.

Three enrollment groups, each served by its own function host with its own policy:
- `sec-strict`, the demo policy: approvals must name the new hardware;
- `sec-window`: approvals that name no hardware are accepted for a few minutes (first wins);
- `sec-ttl`: approvals expire one second after they are made.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.azurite import AzuriteChild
from devstack.dps_emulator.enrollment_groups import (
    EnrollmentGroupFiles,
    ensure_default_enrollment_group,
)
from devstack.processes import Child, stop_children, wait_ready
from devstack.tls import DevstackTls, ensure_tls
from tests.integration.asset_service_fixtures import start_asset_service
from tests.integration.conftest import ASSET_KEY, FUNCTION_KEY, start_function_host
from tests.integration.journey_fixtures import (
    EAST,
    WEST,
    issue_device,
    register_with_node,
    registry_manager,
    start_dps_emulator,
    start_iothub_emulator,
    write_hubs_file,
)
from tests.integration.outage_fixtures import eventually
from tests.integration.policy_files import policy_file

pytestmark = pytest.mark.slow

POLICIES: dict[str, dict[str, Any]] = {
    "sec-strict": {},
    "sec-window": {"unbound_approvals": "window", "unbound_window_minutes": 10},
    "sec-ttl": {"approval_ttl_hours": 1 / 3600},
}


@dataclass
class Stack:
    assets: Child
    iothub: Child
    dps: Child
    tls: DevstackTls
    groups: dict[str, EnrollmentGroupFiles]
    devices_dir: Path

    def asset_api(self) -> httpx.Client:
        return httpx.Client(base_url=self.assets.url, headers={"x-api-key": ASSET_KEY}, timeout=10)

    def register(
        self, group: str, device_id: str, serial: str, claim: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        """Microsoft's Node client registers: the registration state when assigned, else None
        and the failure as DPS reported it (`<errorCode>: <errorMessage>`)."""
        device = issue_device(self.groups[group], device_id, self.devices_dir, serial_number=serial)
        payload = {"replacementFor": claim} if claim is not None else None
        done = register_with_node(self.dps, device, self.tls.ca_cert, payload=payload, timeout=60)
        if done.returncode == 0:
            return done.state, ""
        try:
            failed = json.loads(done.stderr)["result"]["registrationState"]
        except (ValueError, KeyError, TypeError):
            return None, done.stderr
        return None, f"{failed['errorCode']}: {failed['errorMessage']}"

    def device_status(self, hub: str, device_id: str) -> str:
        manager = registry_manager(self.iothub, hub, self.tls)
        return str(manager.get_device(device_id).status)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteChild) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("approvals")
    run_dir = base / "run"
    tls = ensure_tls(base)
    children: list[Child] = []
    try:
        # The asset system allows unbound approvals for a while too: both layers must agree.
        assets = start_asset_service(run_dir, base / "assets", unbound_approval_window_seconds=600)
        children.append(assets)
        iothub = start_iothub_emulator(run_dir, base / "iothub", tls, wait=False)
        children.append(iothub)
        wait_ready(iothub)
        settings = {
            "IOT_HUB_CONNECTION_STRINGS": json.dumps(
                {name: hub["connectionString"] for name, hub in iothub.info["hubs"].items()}
            ),
            "IOT_HUB_CA_BUNDLE": str(tls.ca_cert),
            # Azurite is shared by the whole session: hosts of other modules, which know other
            # hubs, must not take this module's deregistrations off the queue.
            "RECONCILIATION_QUEUE": "approvals-reconciliation",
            "DEAD_LETTER_QUEUE": "approvals-dead-letters",
            "AUDIT_QUEUE": "approvals-audit",
        }
        hosts = {}
        for group, keys in POLICIES.items():
            policy = policy_file(run_dir / f"{group}.toml", groups=[group], **keys)
            hosts[group] = start_function_host(
                run_dir,
                assets.url,
                storage=azurite.connection_string,
                name=f"host-{group}",
                POLICY_FILE=str(policy),
                **settings,
            )
            children.append(hosts[group])
        dps_dir = base / "dps"
        groups = {
            group: ensure_default_enrollment_group(
                dps_dir,
                webhook_url=f"{host.url}/api/allocate?code={FUNCTION_KEY}",
                hubs=[EAST, WEST],
                group_id=group,
            )
            for group, host in hosts.items()
        }
        dps = start_dps_emulator(
            run_dir,
            dps_dir,
            tls,
            hubs_file=write_hubs_file(run_dir / "hubs.json", iothub),
            extra_args=["--poll-seconds", "0.25", "--retry-scale", "0.01"],
        )
        children.append(dps)
        yield Stack(assets, iothub, dps, tls, groups, base / "devices")
    finally:
        stop_children(list(reversed(children)))


def onboard(stack: Stack, group: str, approval: dict[str, Any]) -> tuple[str, str, str]:
    """A fresh asset with a device on it, then the technician's approval; ids and hub."""
    suffix = uuid.uuid4().hex[:8]
    asset_id, old = f"AST-{group}-{suffix}", f"old-{suffix}"
    with stack.asset_api() as api:
        created = api.put(
            f"/assets/{asset_id}",
            json={
                "serialNumber": f"SN-OLD-{suffix}",
                "assetType": "valve-actuator",
                "location": "us-east/plant-9",
            },
        )
        assert created.status_code == 201, created.text
    state, error = stack.register(group, old, f"SN-OLD-{suffix}")
    assert state is not None, error
    assert state["status"] == "assigned", state
    with stack.asset_api() as api:
        version = api.get(f"/assets/{asset_id}").json()["version"]
        approved = api.patch(
            f"/assets/{asset_id}",
            json={
                "status": "pendingReplacement",
                "replacement": {"oldDeviceId": old, "reason": "valve seized", **approval},
            },
            headers={"if-match": f'"{version}"', "content-type": "application/merge-patch+json"},
        )
        assert approved.status_code == 200, approved.text
    return asset_id, old, state["assignedHub"]


def refused_as_replacement(state: dict[str, Any] | None, error: str) -> bool:
    """DPS failed the registration with 400207 and the webhook's replacement-refused detail."""
    return state is None and error.startswith("400207: ") and "payload.replacementFor" in error


def test_an_approval_that_names_no_hardware_is_refused(stack: Stack) -> None:
    asset_id, old, hub = onboard(stack, "sec-strict", {})
    new = f"new-{uuid.uuid4().hex[:8]}"
    state, error = stack.register("sec-strict", new, "SN-ANYTHING", {"deviceId": old})
    assert refused_as_replacement(state, error), (state, error)
    assert "approval-unbound" in error
    with stack.asset_api() as api:
        asset = api.get(f"/assets/{asset_id}").json()
    assert (asset["deviceId"], asset["status"]) == (old, "pendingReplacement")
    assert stack.device_status(hub, old) == "enabled"


def test_an_approval_past_its_ttl_is_refused(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:8]
    asset_id, old, hub = onboard(stack, "sec-ttl", {"approvedSerial": f"SN-NEW-{suffix}"})
    time.sleep(1.5)  # the policy's TTL is one second: this only ever makes it more expired
    state, error = stack.register("sec-ttl", f"new-{suffix}", f"SN-NEW-{suffix}", {"deviceId": old})
    assert refused_as_replacement(state, error), (state, error)
    assert "approval-expired" in error
    with stack.asset_api() as api:
        assert api.get(f"/assets/{asset_id}").json()["deviceId"] == old
    assert stack.device_status(hub, old) == "enabled"


def race(stack: Stack, group: str, contenders: list[tuple[str, str]], old: str) -> list[Any]:
    """Every contender registers at the same moment, each from its own Node process."""
    with concurrent.futures.ThreadPoolExecutor(len(contenders)) as pool:
        futures = [
            pool.submit(stack.register, group, device_id, serial, {"deviceId": old})
            for device_id, serial in contenders
        ]
        return [future.result() for future in futures]


def test_two_devices_racing_for_a_bound_approval_end_with_the_approved_one(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:8]
    approved_serial = f"SN-GOOD-{suffix}"
    asset_id, old, hub = onboard(stack, "sec-strict", {"approvedSerial": approved_serial})
    good, rogue = f"good-{suffix}", f"rogue-{suffix}"
    contenders = [(good, approved_serial), (rogue, f"SN-ROGUE-{suffix}")]
    (good_state, good_error), (rogue_state, rogue_error) = race(
        stack, "sec-strict", contenders, old
    )
    assert good_state is not None, good_error
    assert good_state["status"] == "assigned", good_state
    assert refused_as_replacement(rogue_state, rogue_error), (rogue_state, rogue_error)
    assert approved_serial not in rogue_error  # the rogue never learns the approved serial
    with stack.asset_api() as api:
        asset = api.get(f"/assets/{asset_id}").json()
        history = api.get(f"/assets/{asset_id}/history").json()["items"]
    assert (asset["deviceId"], asset["status"], asset["replacement"]) == (good, "active", None)
    [replaced] = [event for event in history if event["type"] == "deviceReplaced"]
    assert (replaced["newDeviceId"], replaced["reason"]) == (good, "valve seized")
    assert eventually(lambda: stack.device_status(hub, old), lambda s: s == "disabled")


def test_devices_racing_for_an_unbound_approval_in_its_window_end_with_exactly_one(
    stack: Stack,
) -> None:
    """Whichever check refuses the others (the webhook finding the approval used, or the asset
    system's atomic link), exactly one device takes the asset."""
    suffix = uuid.uuid4().hex[:8]
    asset_id, old, hub = onboard(stack, "sec-window", {})
    contenders = [(f"racer{n}-{suffix}", f"SN-R{n}-{suffix}") for n in range(4)]
    results = race(stack, "sec-window", contenders, old)
    winners = [
        device_id
        for (device_id, _), (state, _) in zip(contenders, results, strict=True)
        if state is not None and state["status"] == "assigned"
    ]
    assert len(winners) == 1, results
    losers = [result for result in results if result[0] is None]
    assert all(refused_as_replacement(state, error) for state, error in losers), losers
    with stack.asset_api() as api:
        asset = api.get(f"/assets/{asset_id}").json()
        history = api.get(f"/assets/{asset_id}/history").json()["items"]
    assert asset["deviceId"] == winners[0]
    assert [event["newDeviceId"] for event in history if event["type"] == "deviceReplaced"] == [
        winners[0]
    ]
    assert eventually(lambda: stack.device_status(hub, old), lambda s: s == "disabled")
