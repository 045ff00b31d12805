import pytest

from roles import ACTIONS, ROLE_CATALOG, RoleName, RoleRule, assign_role, authorize, permissions_for


def test_role_permissions_serialize_exactly_as_the_twin_expects():
    assert permissions_for(RoleName.SENSOR).model_dump(mode="json") == {
        "role": "sensor",
        "telemetry": {"send": True, "aggregate": False},
        "commands": {"receive": False, "relay": False},
        "configuration": "none",
        "deviceManagement": False,
    }
    assert permissions_for(RoleName.ACTUATOR).model_dump(mode="json") == {
        "role": "actuator",
        "telemetry": {"send": True, "aggregate": False},
        "commands": {"receive": True, "relay": False},
        "configuration": "limited",
        "deviceManagement": False,
    }
    assert permissions_for(RoleName.GATEWAY).model_dump(mode="json") == {
        "role": "gateway",
        "telemetry": {"send": True, "aggregate": True},
        "commands": {"receive": True, "relay": True},
        "configuration": "full",
        "deviceManagement": True,
    }


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (RoleName.SENSOR, {"telemetry.send"}),
        (
            RoleName.ACTUATOR,
            {"telemetry.send", "commands.receive", "configuration.limited"},
        ),
        (RoleName.GATEWAY, set(ACTIONS)),
    ],
)
def test_authorize_allows_exactly_the_role_actions(role, allowed):
    permissions = permissions_for(role)
    assert {action for action in ACTIONS if authorize(permissions, action)} == allowed


@pytest.mark.parametrize(
    "action", ["", "telemetry", "TELEMETRY.SEND", "commands.*", "admin", "telemetry.send "]
)
def test_authorize_denies_unknown_actions_even_for_the_gateway(action):
    assert authorize(permissions_for(RoleName.GATEWAY), action) is False


def test_the_catalog_has_the_three_roles_and_privilege_grows():
    assert set(ROLE_CATALOG) == {RoleName.SENSOR, RoleName.ACTUATOR, RoleName.GATEWAY}

    def granted(role: RoleName) -> set[str]:
        return {a for a in ACTIONS if authorize(permissions_for(role), a)}

    assert granted(RoleName.SENSOR) < granted(RoleName.ACTUATOR) < granted(RoleName.GATEWAY)


RULES = [
    RoleRule(asset_type="*-sensor", role=RoleName.SENSOR),
    RoleRule(asset_type="valve-*", role=RoleName.GATEWAY),
    RoleRule(asset_type="*-actuator", role=RoleName.ACTUATOR),
    RoleRule(asset_type="*-gateway", role=RoleName.GATEWAY),
]


@pytest.mark.parametrize(
    ("asset_type", "role", "pattern"),
    [
        ("temperature-sensor", RoleName.SENSOR, "*-sensor"),
        ("Temperature-SENSOR", RoleName.SENSOR, "*-sensor"),
        ("valve-actuator", RoleName.GATEWAY, "valve-*"),  # first match wins
        ("pump-actuator", RoleName.ACTUATOR, "*-actuator"),
        ("edge-gateway", RoleName.GATEWAY, "*-gateway"),
    ],
)
def test_first_matching_rule_wins_case_insensitively(asset_type, role, pattern):
    assignment = assign_role(asset_type, RULES, RoleName.SENSOR)
    assert (assignment.role, assignment.reason, assignment.matched_pattern) == (
        role,
        "rule",
        pattern,
    )
    assert assignment.permissions == permissions_for(role)


@pytest.mark.parametrize("asset_type", ["label-printer", "sensor", "", None])
def test_no_match_or_no_asset_gets_the_default_role(asset_type):
    assignment = assign_role(asset_type, RULES, RoleName.SENSOR)
    assert (assignment.role, assignment.reason, assignment.matched_pattern) == (
        RoleName.SENSOR,
        "default",
        None,
    )
