"""Audit entries as table entities: every field back as it went in, long details split."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.entry import AuditEntry
from audit.table_entity import (
    DETAILS_CHUNK_CHARS,
    MAX_DETAILS_UNITS,
    EntityTooLarge,
    from_entity,
    to_entity,
)
from audit.table_keys import row_key

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def entry(**fields: Any) -> AuditEntry:
    return AuditEntry.model_validate(
        {
            "action": "allocation.decided",
            "actor": "dps-webhook",
            "outcome": "assigned",
            "deviceId": "dev-1",
            **fields,
        }
    )


def test_every_field_is_a_property_of_its_own() -> None:
    at = datetime(2026, 11, 26, 5, 13, 32, 123456, tzinfo=UTC)
    original = entry(
        entryId="e-1",
        at=at,
        registrationId="dev-1",
        assetId="A-1",
        hub="hub-1.azure-devices.net",
        requestId="req-1",
        details={"role": "sensor", "roleReason": "assetType thermometer"},
    )
    entity = to_entity(original, "device|dev-1")
    assert entity == {
        "PartitionKey": "device|dev-1",
        "RowKey": row_key(at, "e-1"),
        "at": at,
        "entryId": "e-1",
        "action": "allocation.decided",
        "actor": "dps-webhook",
        "outcome": "assigned",
        "registrationId": "dev-1",
        "deviceId": "dev-1",
        "assetId": "A-1",
        "hub": "hub-1.azure-devices.net",
        "requestId": "req-1",
        "details": '{"role":"sensor","roleReason":"assetType thermometer"}',
    }
    assert from_entity(entity) == original


def test_a_time_in_another_zone_is_stored_in_utc() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    entity = to_entity(entry(at=at), "device|dev-1")
    assert entity["at"] == at
    assert entity["at"].tzinfo == UTC
    assert from_entity(entity).at == at


@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))
def test_details_round_trip(details: dict[str, Any]) -> None:
    original = entry(details=details)
    assert from_entity(to_entity(original, "device|dev-1")).details == details


def test_long_details_are_split_over_numbered_properties_and_joined_again() -> None:
    details = {"blob": "x" * (DETAILS_CHUNK_CHARS * 2 + 10), "emoji": "😀" * 100}
    entity = to_entity(entry(details=details), "device|dev-1")
    parts = [entity["details"], entity["details2"], entity["details3"]]
    assert "details4" not in entity
    assert all(len(part) <= DETAILS_CHUNK_CHARS for part in parts)
    assert json.loads("".join(parts)) == details
    assert from_entity(entity).details == details


def test_details_too_large_for_an_entity_are_refused_before_sending() -> None:
    with pytest.raises(EntityTooLarge, match="details"):
        to_entity(entry(details={"blob": "x" * MAX_DETAILS_UNITS}), "device|dev-1")


@pytest.mark.parametrize(
    "broken",
    [
        {"action": "allocation.decided"},
        {"at": "yesterday", "action": "allocation.decided", "actor": "operator", "outcome": "x"},
        {
            "at": datetime(2026, 1, 1, tzinfo=UTC),
            "action": "allocation.decided",
            "actor": "operator",
            "outcome": "x",
            "details": "{not json",
        },
        {
            "at": datetime(2026, 1, 1, tzinfo=UTC),
            "action": "no.such.action",
            "actor": "operator",
            "outcome": "x",
        },
    ],
)
def test_entities_that_are_not_entries_are_a_value_error(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # pydantic's ValidationError is one
        from_entity(broken)
