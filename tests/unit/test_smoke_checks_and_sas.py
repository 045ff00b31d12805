"""The smoke test's checks (pure) and the CLI's SAS tokens as the emulator checks them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from audit.entry import AuditEntry
from devstack.dps_emulator.service_auth import SasPolicies, SasRejected
from operator_cli.dps_auth import DpsConnectionString, parse_connection_string, sas_token
from operator_cli.errors import ConfigurationError
from operator_cli.smoke_checks import (
    CheckFailed,
    asset_link,
    assignment,
    audit_entry,
    initial_twin,
)

KEY = "c2VjcmV0LXNoYXJlZC1hY2Nlc3Mta2V5LTMyLWJ5dGVzIQ=="
PAYLOAD: dict[str, Any] = {"deviceRole": "sensor", "assetId": "SMOKE-0001"}
STATE: dict[str, Any] = {
    "status": "assigned",
    "deviceId": "smoke-1",
    "assignedHub": "hub-a.azure-devices.net",
    "payload": PAYLOAD,
}


def test_an_assigned_state_passes_and_gives_the_hub():
    assigned = assignment(STATE, "smoke-1", ["HUB-A.azure-devices.net"])
    assert assigned.hub == "hub-a.azure-devices.net"
    assert assigned.payload["deviceRole"] == "sensor"


@pytest.mark.parametrize(
    ("change", "hubs", "words"),
    [
        ({"status": "failed", "errorCode": 400207}, [], "did not assign"),
        ({"deviceId": "other"}, [], "device id 'other'"),
        ({"assignedHub": None}, [], "no hub"),
        ({}, ["hub-b.azure-devices.net"], "not one of"),
    ],
)
def test_a_wrong_assignment_names_the_problem(change, hubs, words):
    with pytest.raises(CheckFailed, match=words):
        assignment(STATE | change, "smoke-1", hubs)


def test_the_initial_twin_must_carry_the_asset_role_and_state():
    tags = {"assetId": "SMOKE-0001", "deviceRole": "sensor", "provisioningState": "provisioned"}
    desired = {"rolePermissions": {"telemetry": True}}
    assert initial_twin(tags, desired, "SMOKE-0001", PAYLOAD) == "sensor"
    with pytest.raises(CheckFailed, match="provisioningState"):
        initial_twin(tags | {"provisioningState": "quarantined"}, desired, "SMOKE-0001", {})
    with pytest.raises(CheckFailed, match="deviceRole"):
        initial_twin(tags, desired, "SMOKE-0001", {"deviceRole": "gateway"})
    with pytest.raises(CheckFailed, match="rolePermissions"):
        initial_twin(tags, {}, "SMOKE-0001", PAYLOAD)


def test_the_asset_must_name_the_device():
    asset_link({"assetId": "A", "deviceId": "smoke-1"}, "smoke-1")
    with pytest.raises(CheckFailed, match="linked to None"):
        asset_link({"assetId": "A", "deviceId": None}, "smoke-1")


def test_only_the_decision_for_this_device_on_this_hub_counts():
    def entry(**fields: str) -> AuditEntry:
        base = {"action": "allocation.decided", "actor": "dps-webhook", "outcome": "provisioned"}
        return AuditEntry.model_validate(base | {"at": datetime.now(UTC)} | fields)

    entries = [
        entry(action="allocation.refused", deviceId="smoke-1", hub="h"),
        entry(deviceId="smoke-2", hub="h"),
        entry(deviceId="smoke-1", hub="other"),
    ]
    assert audit_entry(entries, "smoke-1", "h") is None
    assert audit_entry([*entries, entry(deviceId="smoke-1", hub="H")], "smoke-1", "h")


def _policies(host: str = "mydps.azure-devices-provisioning.net") -> SasPolicies:
    return SasPolicies(host_name=host, keys={"provisioningserviceowner": KEY})


def test_the_clis_token_is_accepted_by_the_emulators_check():
    connection = parse_connection_string(
        f"HostName=MyDps.azure-devices-provisioning.net;SharedAccessKeyName="
        f"provisioningserviceowner;SharedAccessKey={KEY}",
        "test",
    )
    token = sas_token(connection, now=time.time())
    assert _policies().check(token, "/enrollmentGroups/g1") == "provisioningserviceowner"


@pytest.mark.parametrize(
    ("connection", "problem"),
    [
        (
            DpsConnectionString(
                "other.azure-devices-provisioning.net", "provisioningserviceowner", KEY
            ),
            "not this service",
        ),
        (
            DpsConnectionString("mydps.azure-devices-provisioning.net", "reader", KEY),
            "no shared access policy",
        ),
        (
            DpsConnectionString(
                "mydps.azure-devices-provisioning.net", "provisioningserviceowner", "AAAA"
            ),
            "signature",
        ),
    ],
)
def test_a_token_for_another_host_policy_or_key_is_refused(connection, problem):
    token = sas_token(connection, now=time.time())
    with pytest.raises(SasRejected, match=problem):
        _policies().check(token, "/enrollmentGroups/g1")


def test_a_resource_prefix_grants_only_whole_path_segments():
    connection = DpsConnectionString(
        "mydps.azure-devices-provisioning.net/enrollmentGroups", "provisioningserviceowner", KEY
    )
    token = sas_token(connection, now=time.time())
    assert _policies().check(token, "/enrollmentGroups/g1")
    with pytest.raises(SasRejected, match="not this service"):
        _policies().check(token, "/enrollmentGroupsX/g1")
    with pytest.raises(SasRejected, match="expired"):
        _policies().check(sas_token(connection, now=time.time() - 7200), "/enrollmentGroups/g1")


@pytest.mark.parametrize(
    "text",
    [
        "HostName=x;SharedAccessKeyName=p",
        "HostName=x;SharedAccessKeyName=p;SharedAccessKey=not base64!",
        "just text",
    ],
)
def test_a_bad_connection_string_is_refused_without_quoting_it(text):
    with pytest.raises(ConfigurationError) as raised:
        parse_connection_string(text, "DPS_CONNECTION_STRING")
    assert "DPS_CONNECTION_STRING" in str(raised.value)
    assert "not base64!" not in str(raised.value)


async def test_entra_mode_asks_for_the_dps_scope_and_sends_a_bearer_token():
    from azure.core.credentials import AccessToken

    from operator_cli.dps_auth import ENTRA_SCOPE, EntraAuth

    asked: list[tuple[str, ...]] = []

    class Credential:
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            asked.append(scopes)
            return AccessToken("entra-token", int(time.time()) + 600)

        async def close(self) -> None:
            return None

    auth = EntraAuth(Credential())  # type: ignore[arg-type]
    assert await auth.header() == "Bearer entra-token"
    assert asked == [(ENTRA_SCOPE,)]
    assert ENTRA_SCOPE == "https://azure-devices-provisioning.net/.default"
    await auth.close()
