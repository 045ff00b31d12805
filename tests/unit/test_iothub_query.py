"""The IoT Hub emulator's query subset: parsing, IoT Hub's comparison rules, and rejections."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.iothub_emulator.query import (
    MAX_QUERY_LENGTH,
    AllOf,
    AnyOf,
    Comparison,
    QuerySyntaxError,
    TwinQuery,
    parse_query,
)

PENDING = (
    "SELECT * FROM devices WHERE tags.provisioningState = 'pendingReconciliation'"
    " AND tags.pendingSince < '2026-01-01T00:00:00Z'"
)


def twin(device_id: str = "d1", **tags: Any) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "status": "enabled",
        "version": 3,
        "tags": tags,
        "properties": {
            "desired": {"role": "sensor", "$version": 2},
            "reported": {"firmware": {"version": "1.4.0"}, "battery": 81, "$version": 5},
        },
    }


def selects(query: str, document: dict[str, Any]) -> bool:
    return parse_query(query).matches(document)


def where(condition: str) -> str:
    # An IoT Hub query evaluated in memory: no SQL database is behind it.
    return f"SELECT * FROM devices WHERE {condition}"  # noqa: S608


def test_select_all_without_where_selects_every_twin():
    assert parse_query("SELECT * FROM devices") == TwinQuery(where=None)
    assert selects("select * from DEVICES", twin())


def test_the_reconciliation_query_parses_into_its_comparisons():
    assert parse_query(PENDING).where == AllOf(
        (
            Comparison(("tags", "provisioningState"), "=", "pendingReconciliation"),
            Comparison(("tags", "pendingSince"), "<", "2026-01-01T00:00:00Z"),
        )
    )


@pytest.mark.parametrize(
    ("since", "selected"),
    [
        ("2025-12-31T23:59:59Z", True),
        ("2026-01-01T00:00:00Z", False),
        ("2026-01-01T00:00:01Z", False),
        ("2019-06-01T08:00:00.123Z", True),
    ],
)
def test_iso_timestamps_compare_by_time_as_strings(since: str, selected: bool):
    document = twin(provisioningState="pendingReconciliation", pendingSince=since)
    assert selects(PENDING, document) is selected


@pytest.mark.parametrize(
    ("condition", "selected"),
    [
        ("deviceId = 'd1'", True),
        ("deviceId != 'd1'", False),
        ("deviceId <> 'd2'", True),
        ("status = 'enabled'", True),
        ("version >= 3", True),
        ("version > 3", False),
        ("version <= 3.0", True),
        ("version = 0x3", True),
        ("version > -1", True),
        ("properties.reported.battery < 1e2", True),
        ('properties.reported.firmware.version = "1.4.0"', True),
        ("properties.desired.role = 'sensor'", True),
        ("tags.a.b = 'x'", True),
        ("tags.a.b >= 'w'", True),
        ("tags.flag = true", True),
        ("tags.flag != false", True),
        ("tags.gone = null", True),
        ("tags.count = 2", True),
    ],
)
def test_comparisons_on_every_kind_of_path(condition: str, selected: bool):
    document = twin(a={"b": "x"}, flag=True, gone=None, count=2)
    assert selects(where(condition), document) is selected


@pytest.mark.parametrize(
    "condition",
    [
        "tags.missing = 'x'",
        "tags.missing != 'x'",
        "tags.missing < 'x'",
        "tags.a = 'x'",  # an object never compares
        "tags.a != 'x'",
        "tags.list = 1",  # nor an array
        "tags.count = '2'",  # a number is not a string
        "tags.count != '2'",
        "tags.flag = 1",  # nor is a Boolean a number
        "tags.flag > false",  # Booleans have no order
        "tags.gone < 1",
        "tags.a.b.c = 'x'",  # a path through a string
    ],
)
def test_a_comparison_that_is_undefined_selects_nothing(condition: str):
    document = twin(a={"b": "x"}, list=[1], count=2, flag=True, gone=None)
    assert not selects(where(condition), document)


def test_undefined_is_absorbed_by_or_true_and_by_and_false():
    document = twin(state="pending")
    base = "SELECT * FROM devices WHERE "
    assert selects(base + "tags.missing = 1 OR tags.state = 'pending'", document)
    assert not selects(base + "tags.missing = 1 OR tags.state = 'done'", document)
    assert not selects(base + "tags.missing = 1 AND tags.state = 'pending'", document)


def test_and_binds_tighter_than_or_and_parentheses_regroup():
    assert parse_query(
        "SELECT * FROM devices WHERE tags.a = 1 OR tags.b = 2 AND tags.c = 3"
    ).where == AnyOf(
        (
            Comparison(("tags", "a"), "=", 1),
            AllOf((Comparison(("tags", "b"), "=", 2), Comparison(("tags", "c"), "=", 3))),
        )
    )
    grouped = "SELECT * FROM devices WHERE (tags.a = 1 OR tags.b = 2) AND tags.c = 3"
    assert selects(grouped, twin(a=1, c=3))
    assert not selects(grouped, twin(a=1, c=4))
    assert not selects(
        "SELECT * FROM devices WHERE tags.a = 1 OR tags.b = 2 AND tags.c = 3", twin(b=2, c=4)
    )


def test_string_literals_take_both_quotes_and_iot_hubs_escapes():
    document = twin(name='it\'s "quoted" \\ é')
    assert selects(
        r"SELECT * FROM devices WHERE tags.name = 'it\'s \"quoted\" \\ \u00e9'", document
    )
    assert selects(r'SELECT * FROM devices WHERE tags.name = "it\'s \"quoted\" \\ é"', document)


def test_property_names_are_case_sensitive_keywords_are_not():
    assert not selects("SELECT * FROM devices WHERE tags.State = 'x'", twin(state="x"))
    assert selects(
        "SeLeCt * FrOm devices wHeRe tags.state = 'x' aNd tags.state <> 'y'", twin(state="x")
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "expected SELECT"),
        ("SELECT deviceId FROM devices", "only SELECT \\* is supported"),
        ("SELECT * FROM devices.modules", "only FROM devices is supported"),
        ("SELECT * FROM devices WHERE", "a property path"),
        ("SELECT * FROM devices WHERE tags.a", "a comparison operator"),
        ("SELECT * FROM devices WHERE tags.a = ", "a string, number"),
        ("SELECT * FROM devices WHERE tags.a = tags.b", "a string, number"),
        ("SELECT * FROM devices WHERE tags.a == 1", "a string, number"),
        ("SELECT * FROM devices WHERE tags.a = 'open", "unexpected character"),
        ("SELECT * FROM devices WHERE tags.a = 'x' tags.b = 1", "AND, OR or the end"),
        ("SELECT * FROM devices WHERE (tags.a = 1", "expected \\)"),
        ("SELECT * FROM devices WHERE tags.a IN ['x']", "unexpected character '\\['"),
        ("SELECT * FROM devices WHERE NOT tags.a = 1", "a comparison operator"),
        ("SELECT * FROM devices WHERE is_defined(tags.a)", "a comparison operator"),
        ("SELECT * FROM devices WHERE tags.a = 'x' GROUP BY tags.a", "AND, OR or the end"),
        (r"SELECT * FROM devices WHERE tags.a = '\n'", "unsupported escape"),
        ("SELECT * FROM devices WHERE tags.a = 1e999", "out of range"),
        ("SELECT * FROM devices WHERE tags.a = 1; DROP", "unexpected character ';'"),
        (where("(" * 40 + "tags.a = 1" + ")" * 40), "nest deeper"),
        (where("tags.a = '" + "x" * MAX_QUERY_LENGTH + "'"), "longer than"),
    ],
)
def test_anything_outside_the_subset_is_a_syntax_error_saying_where(query: str, message: str):
    with pytest.raises(QuerySyntaxError, match=message):
        parse_query(query)
