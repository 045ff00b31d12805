import json
from datetime import UTC, datetime

import pytest

from sync.events import (
    InvalidEvent,
    asset_event_from,
    twin_change_from,
    twin_change_from_record,
    twin_change_record,
)


def test_an_event_grid_event_names_its_asset_in_data_and_subject():
    event = asset_event_from(
        event_id="e1",
        subject="/assets/AST-1001",
        event_type="AssetManagement.AssetChanged",
        data={"assetId": "AST-1001", "version": 7, "changedFields": ["location"]},
    )
    assert (event.asset_id, event.version, event.event_type) == (
        "AST-1001",
        7,
        "AssetManagement.AssetChanged",
    )


def test_a_cloud_event_with_only_a_subject_is_enough():
    event = asset_event_from(event_id="c1", subject="/assets/AST-2", event_type=None, data=None)
    assert event.asset_id == "AST-2"


@pytest.mark.parametrize(
    ("subject", "data", "message"),
    [
        ("/assets/AST-1", {"assetId": "AST-2"}, "contradicts"),
        (None, {}, "names the asset"),
        ("/devices/x", None, "names the asset"),
        ("/assets/../../etc", None, "names the asset"),
        ("/assets/AST 1", None, "not a valid asset id"),
        (None, {"assetId": "AST 1?x=1"}, "not a valid asset id"),
        (None, {"assetId": 42}, "must be a string"),
        (None, {"assetId": "A" * 129}, "not a valid asset id"),
    ],
)
def test_spoofed_or_hostile_asset_events_are_invalid(subject, data, message):
    with pytest.raises(InvalidEvent, match=message):
        asset_event_from(event_id="x", subject=subject, event_type="t", data=data)


PROPS = {
    "hubName": "hub-us-east",
    "deviceId": "dev-1",
    "opType": "updateTwin",
    "iothub-message-schema": "twinChangeNotification",
    "operationTimestamp": "2026-11-26T00:00:00Z",
}
META = {
    "message-source": "twinChangeEvents",
    "connection-device-id": "dev-1",
    "enqueuedtime": "2026-11-26T00:00:00.1234567Z",
}


def body(document):
    return json.dumps(document).encode()


def test_an_update_notification_keeps_sections_and_drops_metadata():
    change = twin_change_from(
        body(
            {
                "version": 9,
                "tags": {"sync": {"assetVersion": 3}},
                "properties": {
                    "reported": {"firmwareVersion": "2.0", "$metadata": {}, "$version": 4}
                },
            }
        ),
        PROPS,
        META,
        sequence_number=12,
    )
    assert change.device_id == "dev-1"
    assert change.hub_name == "hub-us-east"
    assert change.version == 9
    assert change.reported == {"firmwareVersion": "2.0"}
    assert change.desired is None
    assert change.sync_marker == {"assetVersion": 3}
    assert change.sequence_number == 12


def test_a_replace_notification_carries_the_full_twin():
    change = twin_change_from(
        body(
            {
                "deviceId": "dev-1",
                "version": 3,
                "tags": {"a": 1},
                "properties": {"desired": {"x": 1}, "reported": {"health": "ok"}},
            }
        ),
        {**PROPS, "opType": "replaceTwin"},
        META,
    )
    assert (change.op_type, change.tags, change.desired, change.reported) == (
        "replaceTwin",
        {"a": 1},
        {"x": 1},
        {"health": "ok"},
    )


@pytest.mark.parametrize(
    ("raw", "props", "meta", "message"),
    [
        (
            b"{}",
            {**PROPS, "iothub-message-schema": "deviceLifecycleNotification"},
            META,
            "not a twin",
        ),
        (b"{}", {**PROPS, "deviceId": "bad id/x"}, META, "valid device id"),
        (b"{}", {k: v for k, v in PROPS.items() if k != "deviceId"}, META, "valid device id"),
        (b"{}", {**PROPS, "moduleId": "m1"}, META, "module"),
        (b"{}", {**PROPS, "opType": "deleteTwin"}, META, "opType"),
        (b"not json", PROPS, META, "not JSON"),
        (b"\xff\xfe\x00", PROPS, META, "not JSON"),
        (b'{"version": ' + b"9" * 5000 + b"}", PROPS, META, "not JSON"),
        (b"[" * 100_000, PROPS, META, "not JSON"),
        (b"[]", PROPS, META, "not a JSON object"),
        (b'{"properties": []}', PROPS, META, "properties"),
        (b'{"tags": "x"}', PROPS, META, "tags is not an object"),
    ],
)
def test_malformed_twin_changes_are_invalid(raw, props, meta, message):
    with pytest.raises(InvalidEvent, match=message):
        twin_change_from(raw, props, meta)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({}, "iothub-message-source"),
        ({k: v for k, v in META.items() if k != "message-source"}, "iothub-message-source"),
        ({**META, "message-source": "deviceLifecycleEvents"}, "iothub-message-source"),
        ({**META, "message-source": "Telemetry"}, "iothub-message-source"),
        ({k: v for k, v in META.items() if k != "connection-device-id"}, "connection-device-id"),
        ({**META, "connection-device-id": "dev-2"}, "connection-device-id"),
        ({**META, "connection-device-id": "DEV-1"}, "connection-device-id"),
        ({**META, "connection-device-id": ["dev-1"]}, "connection-device-id"),
        ({k: v for k, v in META.items() if k != "enqueuedtime"}, "iothub-enqueuedtime"),
        ({**META, "enqueuedtime": ""}, "iothub-enqueuedtime"),
        ({**META, "enqueuedtime": None}, "iothub-enqueuedtime"),
        ({**META, "enqueuedtime": 0}, "iothub-enqueuedtime"),
    ],
    ids=[
        "no-system-properties",
        "no-source",
        "lifecycle-source",
        "telemetry-source",
        "no-connection-device",
        "other-connection-device",
        "case-differs",
        "connection-device-not-a-string",
        "no-enqueued-time",
        "empty-enqueued-time",
        "null-enqueued-time",
        "numeric-enqueued-time",
    ],
)
def test_a_twin_change_without_iot_hubs_system_properties_is_forged(meta, message):
    """Application properties can be set by whoever writes to the Event Hub; these cannot."""
    document = body({"version": 2, "properties": {"reported": {"firmwareVersion": "9.9"}}})
    with pytest.raises(InvalidEvent, match=message) as refused:
        twin_change_from(document, PROPS, meta)
    assert "dev-2" not in str(refused.value), "another device's id stays out of the error"


def test_a_datetime_enqueued_time_is_accepted():
    """What a binding that parses the system properties would hand over."""
    change = twin_change_from(b"{}", PROPS, {**META, "enqueuedtime": datetime.now(UTC)})
    assert change.device_id == "dev-1"


def test_a_recorded_twin_change_reads_back_as_it_arrived():
    raw = body({"version": 7, "properties": {"reported": {"health": "ok", "$version": 3}}})
    record = twin_change_record(raw, PROPS, {**META, "connection-auth-method": "x"}, 41)
    assert record["systemProperties"] == {
        "iothub-message-source": "twinChangeEvents",
        "iothub-connection-device-id": "dev-1",
        "iothub-enqueuedtime": "2026-11-26T00:00:00.1234567Z",
        "iothub-connection-auth-method": "x",
    }
    # Through the reconciliation queue: JSON and back.
    replayed = twin_change_from_record(json.loads(json.dumps(record)))
    assert replayed == twin_change_from(raw, PROPS, META, 41)
    assert replayed.reported == {"health": "ok"}
    assert replayed.sequence_number == 41


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"body": "{}", "properties": PROPS}, "iothub-message-source"),
        ({"body": "{}", "properties": PROPS, "systemProperties": {}}, "iothub-message-source"),
        (
            {
                "body": "{}",
                "properties": PROPS,
                "systemProperties": {"message-source": "twinChangeEvents"},
            },
            "iothub-message-source",
        ),
        ({"properties": PROPS, "systemProperties": {}}, "no body"),
        ({"body": 42, "properties": PROPS}, "no body"),
        ({"body": "{}", "properties": "x", "systemProperties": {}}, "not objects"),
        ({"body": "{}", "properties": PROPS, "systemProperties": [1]}, "not objects"),
        ({"truncated": True, "chars": 99_999, "head": "{"}, "too large"),
    ],
    ids=[
        "recorded-before-system-properties",
        "empty",
        "prefix-missing",
        "no-body",
        "body-not-text",
        "properties-not-object",
        "system-not-object",
        "truncated",
    ],
)
def test_a_recorded_event_without_what_twin_change_from_needs_is_invalid(event, message):
    with pytest.raises(InvalidEvent, match=message):
        twin_change_from_record(event)


def test_a_record_keeps_odd_system_property_values_as_json():
    moment = datetime(2026, 11, 26, tzinfo=UTC)
    record = twin_change_record(b"{}", PROPS, {**META, "enqueuedtime": moment}, None)
    assert record["systemProperties"]["iothub-enqueuedtime"] == str(moment)
    json.dumps(record)
    assert twin_change_from_record(record).device_id == "dev-1"
