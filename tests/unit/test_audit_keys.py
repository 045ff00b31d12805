"""Table keys of the audit trail: reversible escaping, partitions, newest-first row keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.entry import AuditEntry
from audit.table_keys import (
    DIGEST_PREFIX,
    MAX_KEY_UNITS,
    escape_key,
    partition_key,
    partition_keys,
    row_key,
    row_key_time,
    split_partition_key,
    unescape_key,
    utf16_units,
)

ANY_TEXT = st.text(st.characters(exclude_categories=[]), max_size=200)
"""Every code point, lone surrogates included (Python strings can hold them)."""
FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), None]),
)


def entry(**fields: object) -> AuditEntry:
    return AuditEntry.model_validate(
        {"action": "allocation.decided", "actor": "dps-webhook", "outcome": "assigned", **fields}
    )


@given(ANY_TEXT)
def test_escaping_round_trips_and_leaves_no_forbidden_character(text: str) -> None:
    escaped = escape_key(text)
    assert unescape_key(escaped) == text
    assert not FORBIDDEN.search(escaped)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain-device_01.x", "plain-device_01.x"),
        ("a/b\\c#d?e", "a%2Fb%5Cc%23d%3Fe"),
        ("100%", "100%25"),
        ("tab\there\x7f\x9f", "tab%09here%7F%9F"),
        ("lone\ud800", "lone%uD800"),
        ("äöü|ß €", "äöü|ß €"),
    ],
)
def test_escapes_are_percent_hex(text: str, escaped: str) -> None:
    assert escape_key(text) == escaped


@pytest.mark.parametrize("bad", ["%", "%4", "%zz", "%u12", "%41%"])
def test_malformed_escapes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="escape"):
        unescape_key(bad)


@given(st.sampled_from(["device", "asset", "registration"]), ANY_TEXT)
def test_partition_keys_split_back_into_kind_and_id(kind: str, value: str) -> None:
    key = partition_key(kind, value)  # type: ignore[arg-type]
    assert utf16_units(key) <= MAX_KEY_UNITS
    assert not FORBIDDEN.search(key)
    assert split_partition_key(key) == (kind, value)


def test_an_id_too_long_for_a_key_is_stored_as_its_digest() -> None:
    long_id = "/" * 200  # 600 characters escaped
    key = partition_key("device", long_id)
    assert key.startswith("device|" + DIGEST_PREFIX)
    assert utf16_units(key) <= MAX_KEY_UNITS
    assert key == partition_key("device", long_id), "the same id always gets the same key"
    assert key != partition_key("device", "/" * 201)
    assert split_partition_key(key) == ("device", None)


@given(MOMENTS, MOMENTS)
def test_row_keys_sort_the_newer_entry_first(first: datetime, second: datetime) -> None:
    def aware(moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    key_first, key_second = row_key(first, "e1"), row_key(second, "e1")
    if aware(first) == aware(second):
        assert key_first == key_second
    else:
        assert (key_first < key_second) == (aware(first) > aware(second))
    assert row_key_time(key_first) == aware(first)


def test_row_keys_of_one_moment_differ_by_entry_id_and_have_a_fixed_width_time() -> None:
    at = datetime(2026, 11, 26, 5, 13, 32, 123456, tzinfo=UTC)
    keys = {row_key(at, entry_id) for entry_id in ("a", "b", "c/d")}
    assert len(keys) == 3
    assert {len(key.split("|", 1)[0]) for key in keys} == {18}
    assert row_key(at, "c/d").endswith("|c%2Fd")
    earliest = row_key(datetime(1, 1, 1, tzinfo=UTC), "x")
    latest = row_key(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "x")
    assert latest < earliest
    assert len(latest.split("|")[0]) == len(earliest.split("|")[0]) == 18


def test_row_key_time_refuses_other_keys() -> None:
    with pytest.raises(ValueError, match="row key"):
        row_key_time("2026-11-26T05:13:32Z|abc")


def test_an_entry_is_kept_under_its_device_asset_and_distinct_registration() -> None:
    both = entry(deviceId="dev-1", assetId="A-1", registrationId="dev-1")
    assert partition_keys(both) == ["device|dev-1", "asset|A-1"]
    renamed = entry(deviceId="dev-1", registrationId="reg/1")
    assert partition_keys(renamed) == ["device|dev-1", "registration|reg%2F1"]
    refused = entry(registrationId="reg-9", action="allocation.refused")
    assert partition_keys(refused) == ["registration|reg-9"]


def test_an_entry_about_nothing_in_particular_goes_to_its_days_partition() -> None:
    at = datetime(2026, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert partition_keys(entry(at=at)) == ["unattributed|2026-02-28"]
