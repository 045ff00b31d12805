import json

import pytest

from sync.events import InvalidEvent, asset_event_from, twin_change_from


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
META = {"message-source": "twinChangeEvents", "connection-device-id": "dev-1"}


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
        (b"{}", {**PROPS, "deviceId": "dev-2"}, META, "disagree"),
        (b"{}", {**PROPS, "deviceId": "bad id/x"}, {}, "valid device id"),
        (b"{}", {**PROPS, "moduleId": "m1"}, META, "module"),
        (b"{}", {**PROPS, "opType": "deleteTwin"}, META, "opType"),
        (b"not json", PROPS, META, "not JSON"),
        (b"[]", PROPS, META, "not a JSON object"),
        (b'{"properties": []}', PROPS, META, "properties"),
        (b'{"tags": "x"}', PROPS, META, "tags is not an object"),
    ],
)
def test_malformed_twin_changes_are_invalid(raw, props, meta, message):
    with pytest.raises(InvalidEvent, match=message):
        twin_change_from(raw, props, meta)
