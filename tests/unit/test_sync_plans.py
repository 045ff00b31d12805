"""The pure halves of sync: which twin write, which asset write, and which is an echo."""

import pytest

from device_twin import SyncMarker, asset_owned_fields
from iothub_client import Twin
from roles import RoleName, assign_role, permissions_for
from sync.asset_to_twin import plan_twin_update, read_marker
from sync.events import TwinChange
from sync.ownership import FIELD_OWNERSHIP, Owner
from sync.twin_to_asset import is_own_echo, plan_asset_update
from tests.unit.fakes import make_asset

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
URL = "http://assets"


def twin_for(asset, policy, hub=EAST, marker_version=None, **extra_tags):
    role = assign_role(asset.asset_type, policy.role_rules, policy.default_role)
    owned = asset_owned_fields(asset, role, URL)
    tags = {k: v for k, v in owned.tags().items() if v is not None} | extra_tags
    if marker_version is not None:
        tags["sync"] = SyncMarker(asset_version=marker_version, hash="h").model_dump(by_alias=True)
    desired = {k: v for k, v in owned.desired().items() if v is not None}
    return Twin(hub, "dev-1", "etag-1", 1, "enabled", tags=tags, desired=desired)


def plan(twin, asset, policy, hub=EAST):
    return plan_twin_update(
        twin=twin,
        asset=asset,
        policy=policy,
        asset_api_public_url=URL,
        current_hub=hub,
        hubs=[EAST, WEST],
    )


def test_a_twin_that_matches_its_asset_needs_no_write(demo_policy):
    asset = make_asset(device_id="dev-1", status="active")
    result = plan(twin_for(asset, demo_policy), asset, demo_policy)
    assert result.patch is None


def test_a_location_change_patches_the_tag_with_a_marker_in_the_same_write(demo_policy):
    before = make_asset(device_id="dev-1", location="us-east/plant-1/line-1")
    twin = twin_for(before, demo_policy)
    after = before.model_copy(update={"location": "us-east/plant-3", "version": 5})
    result = plan(twin, after, demo_policy)
    assert result.patch is not None
    assert result.patch.tags == {
        "location": "us-east/plant-3",
        "sync": {
            "source": "asset-sync",
            "assetVersion": 5,
            "hash": result.patch.tags["sync"]["hash"],
        },
    }
    assert result.patch.desired is None
    assert result.changed == ("tags.location",)


def test_an_asset_type_change_moves_role_and_permissions(demo_policy):
    before = make_asset(device_id="dev-1", asset_type="temperature-sensor")
    after = before.model_copy(update={"asset_type": "edge-gateway", "version": 9})
    result = plan(twin_for(before, demo_policy), after, demo_policy)
    assert result.patch.tags["deviceRole"] == "gateway"
    assert result.patch.tags["assetType"] == "edge-gateway"
    assert result.patch.desired["rolePermissions"] == permissions_for(RoleName.GATEWAY).model_dump(
        mode="json"
    )


def test_a_retired_asset_reaches_tags_and_desired_and_back(demo_policy):
    active = make_asset(device_id="dev-1", status="active")
    retired = active.model_copy(update={"status": "retired", "version": 3})
    result = plan(twin_for(active, demo_policy), retired, demo_policy)
    assert result.patch.tags["assetStatus"] == "retired"
    assert result.patch.desired["assetStatus"] == "retired"
    twin = twin_for(retired, demo_policy)
    revived = retired.model_copy(update={"status": "active", "version": 4})
    back = plan(twin, revived, demo_policy)
    assert back.patch.tags["assetStatus"] is None
    assert back.patch.desired["assetStatus"] is None


@pytest.mark.parametrize("marker_version", [7, 8])
def test_a_twin_already_at_this_or_a_newer_version_is_left_alone(demo_policy, marker_version):
    asset = make_asset(device_id="dev-1", location="us-east/elsewhere")
    asset = asset.model_copy(update={"version": 7})
    twin = twin_for(make_asset(device_id="dev-1"), demo_policy, marker_version=marker_version)
    result = plan(twin, asset, demo_policy)
    assert result.patch is None
    assert "reflects asset version" in result.reason


def test_a_mangled_marker_counts_as_none(demo_policy):
    assert read_marker({"assetVersion": "seven"}) is None
    assert read_marker("x") is None
    asset = make_asset(device_id="dev-1", location="us-east/x").model_copy(update={"version": 2})
    twin = twin_for(make_asset(device_id="dev-1"), demo_policy, sync={"assetVersion": "bad"})
    assert plan(twin, asset, demo_policy).patch is not None


def test_a_move_to_a_location_of_another_hub_flags_reprovisioning_once(demo_policy):
    before = make_asset(device_id="dev-1", location="us-east/plant-1")
    moved = before.model_copy(update={"location": "eu-west/site-a", "version": 4})
    result = plan(twin_for(before, demo_policy), moved, demo_policy)
    request = result.patch.desired["reprovision"]
    assert request == {
        "required": True,
        "targetHub": WEST,
        "reason": "location 'eu-west/site-a' is served by hub-eu-west.azure-devices.net",
        "assetVersion": 4,
    }
    assert result.reprovision is not None
    # Already flagged: a later unrelated change does not rewrite the request.
    twin = twin_for(moved, demo_policy)
    twin.desired["reprovision"] = request
    later = moved.model_copy(update={"attributes": {"x": 1}, "version": 5})
    assert plan(twin, later, demo_policy).patch is None
    # Moved back: the flag is cleared.
    home = moved.model_copy(update={"location": "us-east/plant-1", "version": 6})
    cleared = plan(twin, home, demo_policy)
    assert cleared.patch.desired["reprovision"] is None


def change(reported=None, tags=None):
    return TwinChange("hub-us-east", "dev-1", "updateTwin", 3, tags, None, reported)


def test_our_own_write_is_recognised_as_an_echo():
    assert is_own_echo(change(tags={"location": "x", "sync": {"assetVersion": 3}}))
    assert not is_own_echo(change(tags={"location": "x"}))
    assert not is_own_echo(change(reported={"health": "ok"}, tags={"sync": {}}))


def test_device_owned_values_that_differ_are_copied():
    asset = make_asset(device_id="dev-1")
    result = plan_asset_update(
        change({"firmwareVersion": "2.1.0", "health": "ok"}),
        asset,
        permissions_for(RoleName.SENSOR),
    )
    assert result.patch == {"attributes": {"firmwareVersion": "2.1.0", "health": "ok"}}
    assert result.copied == ("firmwareVersion", "health")


def test_an_identical_report_plans_no_write():
    asset = make_asset(device_id="dev-1").model_copy(update={"attributes": {"health": "ok"}})
    result = plan_asset_update(change({"health": "ok"}), asset, permissions_for(RoleName.SENSOR))
    assert result.patch is None


def test_fields_the_device_does_not_own_are_ignored():
    asset = make_asset(device_id="dev-1")
    result = plan_asset_update(
        change({"location": "moon", "deviceRole": "gateway", "assetId": "AST-9"}),
        asset,
        permissions_for(RoleName.SENSOR),
    )
    assert result.patch is None
    assert set(result.ignored) == {"location", "deviceRole", "assetId"}


def test_a_role_that_does_not_allow_a_field_refuses_it():
    asset = make_asset(device_id="dev-1")
    reported = {"configuration": {"rate": 5}, "connectedDevices": ["a"]}
    sensor = plan_asset_update(change(reported), asset, permissions_for(RoleName.SENSOR))
    assert sensor.patch is None
    assert set(sensor.refused) == {
        ("configuration", "configuration.limited"),
        ("connectedDevices", "commands.relay"),
    }
    actuator = plan_asset_update(change(reported), asset, permissions_for(RoleName.ACTUATOR))
    assert actuator.patch == {"attributes": {"configuration": {"rate": 5}}}
    gateway = plan_asset_update(change(reported), asset, permissions_for(RoleName.GATEWAY))
    assert gateway.patch == {
        "attributes": {"configuration": {"rate": 5}, "connectedDevices": ["a"]}
    }


def test_a_serial_echo_is_checked_not_copied():
    asset = make_asset(device_id="dev-1", serial="SN-1")
    same = plan_asset_update(
        change({"serialNumber": "SN-1"}), asset, permissions_for(RoleName.SENSOR)
    )
    other = plan_asset_update(
        change({"serialNumber": "SN-X"}), asset, permissions_for(RoleName.SENSOR)
    )
    assert (same.patch, same.serial_mismatch) == (None, False)
    assert (other.patch, other.serial_mismatch) == (None, True)


def test_a_null_report_removes_the_copied_attribute():
    asset = make_asset(device_id="dev-1").model_copy(update={"attributes": {"health": "ok"}})
    result = plan_asset_update(change({"health": None}), asset, permissions_for(RoleName.SENSOR))
    assert result.patch == {"attributes": {"health": None}}


def test_every_field_has_one_owner_and_the_readme_documents_it():
    from pathlib import Path

    paths = [rule.twin_path for rule in FIELD_OWNERSHIP]
    assert len(paths) == len(set(paths))
    readme = (Path(__file__).resolve().parents[2] / "docs" / "sync.md").read_text()
    for rule in FIELD_OWNERSHIP:
        assert f"`{rule.twin_name}`" in readme, (
            f"docs/sync.md's ownership table misses {rule.twin_name}"
        )
    assert {rule.owner for rule in FIELD_OWNERSHIP} == set(Owner)
