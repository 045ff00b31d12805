"""Device twins as IoT Hub keeps them: merge patches, versions, $metadata, change bodies.

Pure functions over plain data; the hub service stores the results and emits notifications.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from .devices import Device, JsonObject
from .errors import argument_invalid
from .timestamps import NEVER

# IoT Hub's limits on twin documents (S1): section sizes in bytes, object depth, one value.
TAGS_MAX_BYTES = 8 * 1024
PROPERTIES_MAX_BYTES = 32 * 1024
MAX_DEPTH = 10
VALUE_MAX_BYTES = 4 * 1024
KEY_MAX_BYTES = 1024
# Read-only members a client may echo back in a desired section it read; they are dropped.
_SYSTEM_MEMBERS = ("$metadata", "$version")

UPDATE_TWIN = "updateTwin"
REPLACE_TWIN = "replaceTwin"


@dataclass(frozen=True)
class Section:
    """properties.desired or properties.reported: values, their $metadata tree and $version."""

    values: JsonObject
    metadata: JsonObject
    version: int

    def to_json(self) -> JsonObject:
        return {**self.values, "$metadata": self.metadata, "$version": self.version}

    @classmethod
    def from_json(cls, data: JsonObject) -> Section:
        values = {k: v for k, v in data.items() if k not in _SYSTEM_MEMBERS}
        return cls(values=values, metadata=data["$metadata"], version=data["$version"])


@dataclass(frozen=True)
class TwinState:
    """Everything a twin holds beyond its device identity."""

    version: int
    tags: JsonObject
    desired: Section
    reported: Section

    def to_json(self) -> JsonObject:
        return {
            "version": self.version,
            "tags": self.tags,
            "desired": self.desired.to_json(),
            "reported": self.reported.to_json(),
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> TwinState:
        return cls(
            version=data["version"],
            tags=data["tags"],
            desired=Section.from_json(data["desired"]),
            reported=Section.from_json(data["reported"]),
        )


@dataclass(frozen=True)
class TwinPatch:
    """What a PATCH or PUT /twins/{id} asks to write; None means the body left it out."""

    tags: JsonObject | None
    desired: JsonObject | None


@dataclass(frozen=True)
class TwinChange:
    """A successful write: the new state and the body of its change notification."""

    state: TwinState
    op_type: str
    body: JsonObject


def new_twin(timestamp: str) -> TwinState:
    """The twin a device gets when it is created: version 1, empty sections."""
    empty = Section(values={}, metadata={"$lastUpdated": timestamp}, version=1)
    return TwinState(version=1, tags={}, desired=empty, reported=empty)


def twin_etag(generation_id: str, version: int) -> str:
    """Opaque, new on every change, and never equal across a delete and re-create."""
    digest = hashlib.sha256(f"{generation_id}:{version}".encode()).digest()
    return base64.b64encode(digest[:8]).decode("ascii")


def twin_document(device: Device, state: TwinState) -> JsonObject:
    """The twin as GET /twins/{id} returns it."""
    s = device.settings
    document: JsonObject = {
        "deviceId": device.device_id,
        "etag": twin_etag(device.generation_id, state.version),
        "deviceEtag": device.etag,
        "status": s.status,
        "statusUpdateTime": device.status_updated_time,
        "connectionState": "Disconnected",
        "lastActivityTime": NEVER,
        "cloudToDeviceMessageCount": 0,
        "authenticationType": s.auth_type,
        "x509Thumbprint": {
            "primaryThumbprint": s.primary_thumbprint,
            "secondaryThumbprint": s.secondary_thumbprint,
        },
        "modelId": "",
        "version": state.version,
        "tags": state.tags,
        "properties": {
            "desired": state.desired.to_json(),
            "reported": state.reported.to_json(),
        },
        "capabilities": {"iotEdge": s.iot_edge},
    }
    if s.status_reason is not None:
        document["statusReason"] = s.status_reason
    if s.device_scope is not None:
        document["deviceScope"] = s.device_scope
    return document


def merge_patch(target: JsonObject, patch: JsonObject) -> JsonObject:
    """RFC 7396: objects merge member by member, null deletes, anything else replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            prior = result.get(key)
            result[key] = merge_patch(prior if isinstance(prior, dict) else {}, value)
        else:
            result[key] = value
    return result


def _stamp_all(value: Any, stamp: JsonObject) -> JsonObject:
    """Metadata for a freshly written value: every object level carries the stamp."""
    if isinstance(value, dict):
        return {**stamp, **{key: _stamp_all(child, stamp) for key, child in value.items()}}
    return dict(stamp)


def _stamp_patch(
    metadata: JsonObject,
    before: JsonObject,
    after: JsonObject,
    patch: JsonObject,
    stamp: JsonObject,
) -> JsonObject:
    """Metadata after a merge patch: patched keys and their ancestors get the new stamp."""
    result = {**metadata, **stamp}
    for key, change in patch.items():
        if key not in after:
            result.pop(key, None)
        elif isinstance(change, dict) and isinstance(after[key], dict):
            prior = before.get(key)
            merged_into = prior if isinstance(prior, dict) else {}
            child_metadata = metadata.get(key, {}) if isinstance(prior, dict) else {}
            result[key] = _stamp_patch(child_metadata, merged_into, after[key], change, stamp)
        else:
            result[key] = _stamp_all(after[key], stamp)
    return result


def _changed_metadata(metadata: JsonObject, patch: JsonObject, stamp: JsonObject) -> JsonObject:
    """The part of a section's $metadata that a change notification carries."""
    result = {key: metadata[key] for key in stamp}
    for key, change in patch.items():
        if change is None or key not in metadata:
            continue
        if isinstance(change, dict):
            result[key] = _changed_metadata(metadata[key], change, stamp)
        else:
            result[key] = metadata[key]
    return result


def _patch_section(
    section: Section, patch: JsonObject, version: int, stamp: JsonObject, limit: int, name: str
) -> tuple[Section, JsonObject]:
    """Apply a merge patch; return the new section and its part of the change body."""
    values = merge_patch(section.values, patch)
    check_size(values, limit, name)
    metadata = _stamp_patch(section.metadata, section.values, values, patch, stamp)
    updated = Section(values=values, metadata=metadata, version=version)
    change = {**patch, "$metadata": _changed_metadata(metadata, patch, stamp), "$version": version}
    return updated, change


def update_twin(state: TwinState, patch: TwinPatch, timestamp: str) -> TwinChange | None:
    """PATCH /twins: merge tags and desired. A tag change bumps desired $version too."""
    if not patch.tags and not patch.desired:
        return None
    desired_version = state.desired.version + 1
    body: JsonObject = {"version": state.version + 1}
    tags = state.tags
    if patch.tags:
        tags = merge_patch(state.tags, patch.tags)
        check_size(tags, TAGS_MAX_BYTES, "tags")
        body["tags"] = patch.tags
    desired = replace(state.desired, version=desired_version)
    if patch.desired:
        stamp = {"$lastUpdated": timestamp, "$lastUpdatedVersion": desired_version}
        desired, change = _patch_section(
            state.desired, patch.desired, desired_version, stamp, PROPERTIES_MAX_BYTES, "desired"
        )
        body["properties"] = {"desired": change}
    new_state = TwinState(
        version=state.version + 1, tags=tags, desired=desired, reported=state.reported
    )
    return TwinChange(state=new_state, op_type=UPDATE_TWIN, body=body)


def replace_twin(
    state: TwinState, patch: TwinPatch, timestamp: str, device_id: str, generation_id: str
) -> TwinChange:
    """PUT /twins: tags and desired become exactly the body's (absent means empty)."""
    tags = _without_nulls(patch.tags or {})
    values = _without_nulls(patch.desired or {})
    check_size(tags, TAGS_MAX_BYTES, "tags")
    check_size(values, PROPERTIES_MAX_BYTES, "desired")
    desired_version = state.desired.version + 1
    stamp = {"$lastUpdated": timestamp, "$lastUpdatedVersion": desired_version}
    desired = Section(values=values, metadata=_stamp_all(values, stamp), version=desired_version)
    new_state = TwinState(
        version=state.version + 1, tags=tags, desired=desired, reported=state.reported
    )
    body = {
        "deviceId": device_id,
        "etag": twin_etag(generation_id, new_state.version),
        "version": new_state.version,
        "tags": tags,
        "properties": {"desired": desired.to_json(), "reported": state.reported.to_json()},
    }
    return TwinChange(state=new_state, op_type=REPLACE_TWIN, body=body)


def update_reported(state: TwinState, patch: JsonObject, timestamp: str) -> TwinChange:
    """What a device's reported-properties PATCH does; every write counts, even identical."""
    reported_version = state.reported.version + 1
    reported, change = _patch_section(
        state.reported,
        patch,
        reported_version,
        {"$lastUpdated": timestamp},
        PROPERTIES_MAX_BYTES,
        "reported",
    )
    new_state = replace(state, version=state.version + 1, reported=reported)
    body = {"version": new_state.version, "properties": {"reported": change}}
    return TwinChange(state=new_state, op_type=UPDATE_TWIN, body=body)


def _without_nulls(value: JsonObject) -> JsonObject:
    return {
        key: _without_nulls(child) if isinstance(child, dict) else child
        for key, child in value.items()
        if child is not None
    }


def check_size(values: JsonObject, limit: int, name: str) -> None:
    size = len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > limit:
        raise argument_invalid(f"{name} would be {size} bytes; IoT Hub allows {limit}")


def _check_value(value: Any, path: str, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise argument_invalid(f"{path} is nested deeper than {MAX_DEPTH} levels")
        for key, child in value.items():
            _check_key(key, path)
            _check_value(child, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _check_value(child, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str) and len(value.encode("utf-8")) > VALUE_MAX_BYTES:
        raise argument_invalid(f"{path} is longer than {VALUE_MAX_BYTES} bytes")


def _check_key(key: str, path: str) -> None:
    """IoT Hub keys: up to 1 KB, no control characters, no '.', '$' or space."""
    if not key or len(key.encode("utf-8")) > KEY_MAX_BYTES:
        raise argument_invalid(f"a key under {path} is empty or longer than {KEY_MAX_BYTES} bytes")
    bad = [c for c in key if c in ".$ " or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    if bad:
        raise argument_invalid(f"key {key[:80]!r} under {path} contains {bad[0]!r}")


def _section(value: Any, name: str, *, drop_system: bool) -> JsonObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise argument_invalid(f"{name} must be a JSON object")
    section: JsonObject = value
    if drop_system:
        section = {k: v for k, v in section.items() if k not in _SYSTEM_MEMBERS}
    # Depth starts at 1 for the section's own members, as IoT Hub counts it.
    _check_value(section, name, 1)
    return section


def parse_twin_body(body: Any, device_id: str) -> TwinPatch:
    """Read tags and properties.desired from a twin PATCH/PUT body; reject reported."""
    if not isinstance(body, dict):
        raise argument_invalid("the twin must be a JSON object")
    if body.get("deviceId") not in (None, device_id):
        raise argument_invalid(f"deviceId {body.get('deviceId')!r} does not match the URL")
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise argument_invalid("properties must be a JSON object")
    properties = properties or {}
    if properties.get("reported") is not None:
        raise argument_invalid("properties.reported can only be written by the device")
    return TwinPatch(
        tags=_section(body.get("tags"), "tags", drop_system=False),
        desired=_section(properties.get("desired"), "properties.desired", drop_system=True),
    )


def parse_reported_patch(body: Any) -> JsonObject:
    """A device's reported-properties patch: a JSON object, nulls delete."""
    section = _section(body, "properties.reported", drop_system=False)
    if section is None:
        raise argument_invalid("the reported patch must be a JSON object")
    return section
