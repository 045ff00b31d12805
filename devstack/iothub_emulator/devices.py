"""Device identities: validating what the service API sends and shaping what IoT Hub returns."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .errors import argument_invalid
from .policies import new_key
from .timestamps import NEVER, format_timestamp

JsonObject = dict[str, Any]

# IoT Hub's device id rules: case-sensitive, ASCII alphanumerics plus - . % _ * ? ! ( ) , : = @ $ '
DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")
_AUTH_TYPES = {t.lower(): t for t in ("sas", "selfSigned", "certificateAuthority", "none")}
_STATUS_REASON_MAX = 128
# .NET ticks (100 ns since 0001-01-01) at the Unix epoch: generation ids look like IoT Hub's.
_TICKS_AT_EPOCH = 621_355_968_000_000_000


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.fullmatch(device_id):
        raise argument_invalid(
            f"device id {device_id[:140]!r} is invalid: 1-128 characters from ASCII letters, "
            "digits and - . % _ * ? ! ( ) , : = @ $ '"
        )
    return device_id


@dataclass(frozen=True)
class DeviceSettings:
    """The writable part of a device identity, as a PUT /devices/{id} body asks for it."""

    status: str
    status_reason: str | None
    auth_type: str
    primary_key: str | None
    secondary_key: str | None
    primary_thumbprint: str | None
    secondary_thumbprint: str | None
    iot_edge: bool
    device_scope: str | None
    parent_scopes: tuple[str, ...]


@dataclass(frozen=True)
class Device:
    device_id: str
    generation_id: str
    etag: str
    settings: DeviceSettings
    status_updated_time: str

    @property
    def status(self) -> str:
        return self.settings.status

    def to_json(self) -> JsonObject:
        s = self.settings
        body: JsonObject = {
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": "Disconnected",
            "status": s.status,
            "statusReason": s.status_reason,
            "connectionStateUpdatedTime": NEVER,
            "statusUpdatedTime": self.status_updated_time,
            "lastActivityTime": NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "symmetricKey": {"primaryKey": s.primary_key, "secondaryKey": s.secondary_key},
                "x509Thumbprint": {
                    "primaryThumbprint": s.primary_thumbprint,
                    "secondaryThumbprint": s.secondary_thumbprint,
                },
                "type": s.auth_type,
            },
            "capabilities": {"iotEdge": s.iot_edge},
            "parentScopes": list(s.parent_scopes),
        }
        if s.device_scope is not None:
            body["deviceScope"] = s.device_scope
        return body

    @classmethod
    def from_json(cls, data: JsonObject) -> Device:
        auth = data["authentication"]
        return cls(
            device_id=data["deviceId"],
            generation_id=data["generationId"],
            etag=data["etag"],
            status_updated_time=data["statusUpdatedTime"],
            settings=DeviceSettings(
                status=data["status"],
                status_reason=data["statusReason"],
                auth_type=auth["type"],
                primary_key=auth["symmetricKey"]["primaryKey"],
                secondary_key=auth["symmetricKey"]["secondaryKey"],
                primary_thumbprint=auth["x509Thumbprint"]["primaryThumbprint"],
                secondary_thumbprint=auth["x509Thumbprint"]["secondaryThumbprint"],
                iot_edge=data["capabilities"]["iotEdge"],
                device_scope=data.get("deviceScope"),
                parent_scopes=tuple(data.get("parentScopes", ())),
            ),
        )


def new_device_etag() -> str:
    """Opaque like IoT Hub's (base64 of a decimal number); new on every write."""
    return base64.b64encode(str(secrets.randbelow(10**10)).encode()).decode("ascii")


def new_generation_id() -> str:
    return str(_TICKS_AT_EPOCH + time.time_ns() // 100)


def create_device(device_id: str, settings: DeviceSettings, now: datetime) -> Device:
    generation_id = new_generation_id()
    if settings.iot_edge and settings.device_scope is None:
        settings = replace(
            settings, device_scope=f"ms-azure-iot-edge://{device_id}-{generation_id}"
        )
    return Device(
        device_id=device_id,
        generation_id=generation_id,
        etag=new_device_etag(),
        settings=settings,
        status_updated_time=format_timestamp(now) if settings.status == "disabled" else NEVER,
    )


def update_device(existing: Device, settings: DeviceSettings, now: datetime) -> Device:
    """Keep identity and generation; a status change stamps statusUpdatedTime."""
    if existing.settings.iot_edge and settings.device_scope is None:
        settings = replace(settings, device_scope=existing.settings.device_scope)
    changed_status = settings.status != existing.status
    return replace(
        existing,
        etag=new_device_etag(),
        settings=settings,
        status_updated_time=(
            format_timestamp(now) if changed_status else existing.status_updated_time
        ),
    )


def _object(value: Any, name: str) -> JsonObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argument_invalid(f"{name} must be a JSON object")
    return value


def _optional_str(body: JsonObject, key: str, name: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise argument_invalid(f"{name} must be a string")
    return value


def _symmetric_key(value: str | None, name: str) -> str:
    if value is None:
        return new_key()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise argument_invalid(f"{name} must be base64") from None
    if not 16 <= len(raw) <= 64:
        raise argument_invalid(f"{name} must decode to 16-64 bytes")
    return value


def _thumbprint(value: str | None, name: str) -> str | None:
    if value is not None and not _THUMBPRINT.fullmatch(value):
        raise argument_invalid(f"{name} must be a SHA-1 (40) or SHA-256 (64) hex thumbprint")
    return value


def parse_device_body(body: Any, device_id: str) -> DeviceSettings:
    """Validate a Device JSON; read-only fields (etag, generationId, times) are ignored."""
    body = _object(body, "the device")
    if body.get("deviceId") not in (None, device_id):
        raise argument_invalid(f"deviceId {body.get('deviceId')!r} does not match the URL")
    status = (_optional_str(body, "status", "status") or "enabled").lower()
    if status not in ("enabled", "disabled"):
        raise argument_invalid("status must be enabled or disabled")
    reason = _optional_str(body, "statusReason", "statusReason")
    if reason is not None and len(reason) > _STATUS_REASON_MAX:
        raise argument_invalid(f"statusReason is longer than {_STATUS_REASON_MAX} characters")
    auth = _object(body.get("authentication"), "authentication")
    auth_type = _AUTH_TYPES.get(
        (_optional_str(auth, "type", "authentication.type") or "sas").lower()
    )
    if auth_type is None:
        raise argument_invalid(
            "authentication.type must be sas, selfSigned, certificateAuthority or none"
        )
    keys = _object(auth.get("symmetricKey"), "authentication.symmetricKey")
    prints = _object(auth.get("x509Thumbprint"), "authentication.x509Thumbprint")
    primary_key = secondary_key = primary_print = secondary_print = None
    if auth_type == "sas":
        primary_key = _symmetric_key(
            _optional_str(keys, "primaryKey", "primaryKey"), "symmetricKey.primaryKey"
        )
        secondary_key = _symmetric_key(
            _optional_str(keys, "secondaryKey", "secondaryKey"), "symmetricKey.secondaryKey"
        )
    elif auth_type == "selfSigned":
        primary_print = _thumbprint(
            _optional_str(prints, "primaryThumbprint", "primaryThumbprint"), "primaryThumbprint"
        )
        secondary_print = _thumbprint(
            _optional_str(prints, "secondaryThumbprint", "secondaryThumbprint"),
            "secondaryThumbprint",
        )
        if primary_print is None:
            raise argument_invalid(
                "selfSigned authentication needs x509Thumbprint.primaryThumbprint"
            )
    capabilities = _object(body.get("capabilities"), "capabilities")
    iot_edge = capabilities.get("iotEdge", False)
    if not isinstance(iot_edge, bool):
        raise argument_invalid("capabilities.iotEdge must be true or false")
    scopes = body.get("parentScopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise argument_invalid("parentScopes must be a list of strings")
    return DeviceSettings(
        status=status,
        status_reason=reason,
        auth_type=auth_type,
        primary_key=primary_key,
        secondary_key=secondary_key,
        primary_thumbprint=primary_print,
        secondary_thumbprint=secondary_print,
        iot_edge=iot_edge,
        device_scope=_optional_str(body, "deviceScope", "deviceScope"),
        parent_scopes=tuple(scopes),
    )
