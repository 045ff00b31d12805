from pathlib import Path

import pytest

from policies import PolicyError, load_policy, parse_policy
from roles import RoleName

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
version = "v1"
default_role = "sensor"
"""


def test_the_demo_policy_routes_and_maps_as_documented():
    policy = load_policy(REPO / "policies" / "demo.toml")
    assert [(r.location, r.hub) for r in policy.hub_rules] == [
        ("us-east/*", "hub-us-east.azure-devices.net"),
        ("eu-west/*", "hub-eu-west.azure-devices.net"),
    ]
    assert [(r.asset_type, r.role) for r in policy.role_rules] == [
        ("*-sensor", RoleName.SENSOR),
        ("*-actuator", RoleName.ACTUATOR),
        ("*-gateway", RoleName.GATEWAY),
    ]
    assert policy.default_role is RoleName.SENSOR


def test_defaults_are_the_strict_choices():
    policy = parse_policy(MINIMAL, "inline")
    assert policy.unknown_device == "reject"
    assert policy.hub_fallback == "reject"
    assert policy.attestation.clock_skew_seconds == 300
    assert policy.hub_rules == []
    assert policy.role_rules == []


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('version = "v1"', "default_role"),
        (MINIMAL + 'unknown_device = "allow"', "unknown_device"),
        (MINIMAL + 'hub_fallback = "random"', "hub_fallback"),
        (MINIMAL + 'default_rol = "sensor"', "default_rol"),
        (MINIMAL + '[[hub_rules]]\nlocation = "us/*"\nhub = "not a host"', "hub_rules[0].hub"),
        (MINIMAL + '[[hub_rules]]\nlocation = "us/*"', "hub_rules[0].hub"),
        (MINIMAL + '[[role_rules]]\nasset_type = "*"\nrole = "admin"', "role_rules[0].role"),
        (MINIMAL + "[attestation]\nclock_skew_seconds = -1", "attestation.clock_skew_seconds"),
        ('version = ""\ndefault_role = "sensor"', "version"),
    ],
)
def test_an_invalid_policy_names_the_key(text, names):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.toml")
    assert "policy.toml" in str(caught.value)
    assert names in str(caught.value)


def test_not_toml_is_reported_with_the_file_name():
    with pytest.raises(PolicyError, match=r"policy\.toml is not valid TOML"):
        parse_policy("version = ", "policy.toml")


def test_a_missing_file_is_reported_with_its_path(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=r"nope\.toml cannot be read"):
        load_policy(missing)


def test_the_default_role_must_be_least_privilege():
    text = """
version = "v1"
default_role = "gateway"
[[role_rules]]
asset_type = "*-sensor"
role = "sensor"
"""
    with pytest.raises(PolicyError, match="least privilege"):
        parse_policy(text, "policy.toml")


def test_a_default_role_no_larger_than_every_rule_is_accepted():
    text = """
version = "v1"
default_role = "actuator"
[[role_rules]]
asset_type = "*-gateway"
role = "gateway"
"""
    assert parse_policy(text, "p").default_role is RoleName.ACTUATOR
