"""Device-reported values against their field's constraint in the ownership table, and the plan
that results: a value that does not fit is refused, the rest of the change still counts."""

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roles import RoleName, permissions_for
from sync.constraints import JsonObject, ListOf, Text, ValueConstraint
from sync.events import TwinChange
from sync.ownership import DEVICE_REPORTED, FIELD_OWNERSHIP, Owner
from sync.twin_to_asset import plan_asset_update
from tests.unit.fakes import make_asset

GATEWAY = permissions_for(RoleName.GATEWAY)
"""Allows every device-owned field, so only the constraints decide."""


def constraint_of(field: str) -> ValueConstraint:
    constraint = DEVICE_REPORTED[field].constraint
    assert constraint is not None
    return constraint


def violation(field, value):
    return constraint_of(field).violation(value)


def nested(depth):
    value: Any = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


ACCEPTED = {
    "firmwareVersion": [
        "1.0.0",
        "3.1.4",
        "1.2.3-rc.1+build.5",
        "1.0.0-abc123",
        "V2_0",
        "7",
        "a" * 64,
    ],
    "health": ["ok", "degraded", "h3", "sentinel-1a2b3c", "NOT_OK", "a" * 32],
    "configuration": [
        {},
        {"rate": 5},
        {"rate": 5.5, "mode": "eco", "on": True, "off": None, "offset": -(2**53)},
        {"channels": [1, 2, {"gain": 3}]},
        nested(5),
        {"note": "ünïcödé is fine inside a setting"},
        {"s": "x" * 256},
    ],
    "connectedDevices": [
        [],
        ["child-1"],
        ["child-1", "child-2", "a.b%c_d*e?f!g(h),i:j=k@l$m'n"],
        ["x" * 128],
        [f"child-{n}" for n in range(250)],
    ],
    "serialNumber": ["SN-1", "SN S/1 #2", "~" * 128, " "],
}

REFUSED = {
    "firmwareVersion": [
        ("", "length outside 1-64"),
        ("a" * 65, "length outside 1-64"),
        ("9" * 1_000_000, "length outside 1-64"),
        ("1.0 beta", "a character outside"),
        ("1.0\n", "a character outside"),
        ("1.0\x00", "a character outside"),
        ("1.0;rm -rf /", "a character outside"),
        ("<script>", "a character outside"),
        ("1.0é", "a character outside"),
        ("\u202e1.0", "a character outside"),
        (1.0, "not a string"),
        (3, "not a string"),
        (True, "not a string"),
        (["1.0"], "not a string"),
        ({"v": "1"}, "not a string"),
    ],
    "health": [
        ("", "length outside 1-32"),
        ("a" * 33, "length outside 1-32"),
        ("ok!", "a character outside"),
        ("ok ok", "a character outside"),
        ("ok\r\n", "a character outside"),
        ("ok.1", "a character outside"),
        ("\U0001f4a5", "a character outside"),
        (1, "not a string"),
        (False, "not a string"),
        ({"status": "ok"}, "not a string"),
    ],
    "configuration": [
        ("full", "not a JSON object"),
        ([1], "not a JSON object"),
        (7, "not a JSON object"),
        ({"a b": 1}, "a key that is not"),
        ({"$x": 1}, "a key that is not"),
        ({"a.b": 1}, "a key that is not"),
        ({"": 1}, "a key that is not"),
        ({"k" * 65: 1}, "a key that is not"),
        ({1: 1}, "a key that is not"),
        ({"n": {"x\n": 1}}, "a key that is not"),
        (nested(6), "nested deeper than 5 levels"),
        (nested(50_000), "nested deeper than 5 levels"),
        ({"a": [[[[[1]]]]]}, "nested deeper than 5 levels"),
        ({f"k{n}": n for n in range(129)}, "more than 128 keys and array items"),
        ({"list": [0] * 1_000_000}, "more than 128 keys and array items"),
        ({"s": "x" * 257}, "a string longer than 256"),
        ({"s": "a\x00"}, "control character"),
        ({"s": "bell\x07"}, "control character"),
        ({"s": "c1\x85"}, "control character"),
        ({"s": "\ud800"}, "lone surrogate"),
        ({"n": math.nan}, "not finite"),
        ({"n": math.inf}, "not finite"),
        ({"n": 2**53 + 1}, "beyond"),
        ({"n": -(10**5000)}, "beyond"),
        ({"x": b"bytes"}, "not JSON"),
        ({"x": (1, 2)}, "not JSON"),
        ({"x": {1, 2}}, "not JSON"),
        ({"x": object()}, "not JSON"),
        ({f"k{n}": "x" * 250 for n in range(20)}, "more than 4096 characters serialised"),
    ],
    "connectedDevices": [
        ("child-1", "not a list"),
        ({"child-1": True}, "not a list"),
        ([1], "an item: not a string"),
        ([None], "an item: not a string"),
        ([["a"]], "an item: not a string"),
        (["bad id"], "an item: a character outside"),
        (["a/b"], "an item: a character outside"),
        (["a#b"], "an item: a character outside"),
        (["x" * 129], "an item: length outside 1-128"),
        ([""], "an item: length outside 1-128"),
        (["a", "a"], "an item appears twice"),
        ([f"child-{n}" for n in range(251)], "more than 250 items"),
        (["a"] * 1_000_000, "more than 250 items"),
    ],
    "serialNumber": [
        ("", "length outside 1-128"),
        ("x" * 129, "length outside 1-128"),
        ("SN\t1", "a character outside printable ASCII"),
        ("SN-é", "a character outside printable ASCII"),
        ("SN\x7f", "a character outside printable ASCII"),
        (5, "not a string"),
    ],
}


def test_every_device_owned_field_has_a_constraint_and_no_other_field_does():
    for rule in FIELD_OWNERSHIP:
        assert (rule.constraint is not None) == (rule.owner is Owner.DEVICE), rule.twin_name
    assert set(ACCEPTED) == set(REFUSED) == set(DEVICE_REPORTED)


@pytest.mark.parametrize(
    ("field", "value"), [(field, value) for field, values in ACCEPTED.items() for value in values]
)
def test_values_devices_really_report_fit(field, value):
    assert violation(field, value) is None


@pytest.mark.parametrize(
    ("field", "value", "broken"),
    [(field, value, broken) for field, cases in REFUSED.items() for value, broken in cases],
    ids=lambda item: item if isinstance(item, str) and len(item) < 40 else None,
)
def test_values_that_break_the_rule_are_named_by_the_rule_broken(field, value, broken):
    found = violation(field, value)
    assert found is not None
    assert broken in found


def change(reported):
    return TwinChange("hub-us-east", "dev-1", "updateTwin", 3, None, None, reported)


def test_an_invalid_value_is_refused_and_the_rest_of_the_change_still_counts():
    asset = make_asset(device_id="dev-1")
    plan = plan_asset_update(
        change(
            {
                "firmwareVersion": "2.1.0",
                "health": "ok\x1b[31m",
                "configuration": {"rate": math.nan},
                "connectedDevices": ["child-1"],
            }
        ),
        asset,
        GATEWAY,
    )
    assert plan.patch == {
        "attributes": {"firmwareVersion": "2.1.0", "connectedDevices": ["child-1"]}
    }
    assert plan.copied == ("firmwareVersion", "connectedDevices")
    assert [(item.field, item.violation) for item in plan.invalid] == [
        ("health", "a character outside [A-Za-z0-9_-]"),
        ("configuration", "a number that is not finite"),
    ]
    assert plan.invalid[0].rule == constraint_of("health").description


def test_null_still_means_removed():
    asset = make_asset(device_id="dev-1").model_copy(
        update={"attributes": {"health": "ok", "configuration": {"rate": 1}}}
    )
    reported = dict.fromkeys(DEVICE_REPORTED)
    plan = plan_asset_update(change(reported), asset, GATEWAY)
    assert plan.invalid == ()
    assert plan.patch == {"attributes": {"health": None, "configuration": None}}
    assert plan.serial_mismatch is False


def test_an_invalid_serial_is_refused_not_compared():
    asset = make_asset(device_id="dev-1", serial="SN-1")
    plan = plan_asset_update(change({"serialNumber": "SN-1\n"}), asset, GATEWAY)
    assert (plan.patch, plan.serial_mismatch) == (None, False)
    assert [item.field for item in plan.invalid] == ["serialNumber"]


def test_a_role_refusal_comes_before_the_constraint():
    """A sensor may not report configuration at all: that is the refusal it gets."""
    plan = plan_asset_update(
        change({"configuration": "not even an object"}),
        make_asset(device_id="dev-1"),
        permissions_for(RoleName.SENSOR),
    )
    assert plan.refused == (("configuration", "configuration.limited"),)
    assert plan.invalid == ()


def test_rule_descriptions_say_what_fits():
    assert DEVICE_REPORTED["firmwareVersion"].constraint == Text(1, 64, "A-Za-z0-9._+-")
    assert (
        constraint_of("firmwareVersion").description
        == "a string of 1-64 characters from [A-Za-z0-9._+-]"
    )
    assert isinstance(DEVICE_REPORTED["configuration"].constraint, JsonObject)
    assert isinstance(DEVICE_REPORTED["connectedDevices"].constraint, ListOf)
    assert "printable ASCII" in constraint_of("serialNumber").description


# --- hostile values -----------------------------------------------------------------------------

MARKER = "Zq7\u2603"
"""In every hostile string: whatever a refusal says, this must not be in it."""

hostile_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40).map(
        lambda text: MARKER + text
    ),
    st.integers(0, 200_000).map(lambda n: MARKER + "9" * n),
    st.sampled_from(["\x00", "\x1b[2J", "\r\n", "\ud83d", "\u202e", "%s%n", "'; --"]).map(
        lambda text: MARKER + text
    ),
)
hostile_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.floats(),
    hostile_text,
    st.binary(max_size=8),
)


def _deep(depth):
    value: Any = [MARKER]
    for _ in range(depth):
        value = [value] if depth % 2 else {MARKER: value}
    return value


hostile_value = st.one_of(
    st.recursive(
        hostile_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6),
            st.dictionaries(st.one_of(hostile_text, st.text(max_size=6)), inner, max_size=6),
            st.tuples(inner, inner),
            st.frozensets(st.integers(), max_size=3),
        ),
        max_leaves=30,
    ),
    st.integers(1, 5_000).map(_deep),
    st.integers(0, 20_000).map(lambda n: {f"k{i}": MARKER for i in range(n)}),
    st.integers(0, 20_000).map(lambda n: [MARKER] * n),
)


def _fits(field, value):
    return value is None or violation(field, value) is None


@settings(max_examples=300, deadline=None)
@given(
    reported=st.dictionaries(
        st.sampled_from(sorted(DEVICE_REPORTED)),
        hostile_value,
        min_size=1,
    )
)
def test_no_hostile_value_raises_or_is_copied_unchecked_or_named_in_a_refusal(reported):
    asset = make_asset(device_id="dev-1", serial=MARKER)
    plan = plan_asset_update(change(reported), asset, GATEWAY)
    for name, value in ((plan.patch or {}).get("attributes") or {}).items():
        assert _fits(name, value), name
    for item in plan.invalid:
        assert not _fits(item.field, reported[item.field])
        assert item.rule == constraint_of(item.field).description
        assert MARKER not in item.violation
    decided = set(plan.copied) | {item.field for item in plan.invalid}
    unchanged = {
        name
        for name in reported
        if name == "serialNumber" or asset.attributes.get(name) == reported[name]
    }
    assert decided | unchanged >= set(reported)
    # What gets written is JSON: the asset API takes nothing else.
    json.dumps(plan.patch, allow_nan=False)
