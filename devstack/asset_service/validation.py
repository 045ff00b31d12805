"""Turn untrusted JSON and query strings into validated values; every 400 names its field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from .fields import (
    ASSET_FIELDS,
    READ_ONLY_FIELDS,
    REMOVABLE_BY_PATCH,
    REPLACEMENT_FIELDS,
    REQUIRED_FIELDS,
)
from .model import (
    AssetDraft,
    AssetStatus,
    JsonObject,
    ProvisioningStatus,
    ReplacementTerms,
    canonical_json,
)
from .problems import invalid

E = TypeVar("E", bound=StrEnum)

ASSET_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
ASSET_TYPE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# IoT Hub device ids: ASCII alphanumerics plus - . % _ * ? ! ( ) , : = @ $ '
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
# DPS registration ids: alphanumerics plus - . _ :
REGISTRATION_ID_PATTERN = re.compile(r"[A-Za-z0-9\-._:]{1,128}")
# Certificate thumbprints as tools print them: hex in either case, one colon or space allowed
# between digits. Stored and compared as uppercase hex without separators.
SHA1_HEX_DIGITS = 40
SHA256_HEX_DIGITS = 64
_DIGIT_AND_SEPARATOR = "[0-9A-Fa-f][: ]?"
SHA1_THUMBPRINT_PATTERN = re.compile(f"(?:{_DIGIT_AND_SEPARATOR}){{39}}[0-9A-Fa-f]")
THUMBPRINT_PATTERN = re.compile(
    f"(?:(?:{_DIGIT_AND_SEPARATOR}){{39}}|(?:{_DIGIT_AND_SEPARATOR}){{63}})[0-9A-Fa-f]"
)
THUMBPRINT_SEPARATORS = re.compile("[: ]")
# Free text (location, an approval's reason): anything but the C0 and C1 control characters
# (Unicode category Cc), which would break log lines. A character class, not a category test, so
# that asset_client/openapi.yaml states the same rule as a pattern any adapter's regex engine reads.
TEXT_PATTERN = re.compile(r"[^\u0000-\u001F\u007F-\u009F]*")
# Serial numbers and what a device says about itself: also no invisible or direction-changing
# formatting (soft hyphen, zero-width and bidi controls, BOM, interlinear annotations), no line
# or paragraph separators, no spaces other than U+0020.
PRINTABLE_PATTERN = re.compile(
    r"[^\u0000-\u001F\u007F-\u00A0\u00AD\u061C\u1680\u180E\u2000-\u200F\u2028-\u202F"
    r"\u205F-\u206F\u3000\uFEFF\uFFF9-\uFFFB]*"
)

MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_REASON_CHARS = 1024
MAX_DEVICE_REASON_CHARS = 256
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

LINK_FIELDS = (
    "deviceId",
    "registrationId",
    "thumbprint",
    "sha1Thumbprint",
    "serialNumber",
    "replacementFor",
    "deviceReason",
)
LIST_PARAMETERS = ("deviceId", "serialNumber", "location", "limit", "after")


def shorten(name: str) -> str:
    """Bound a client-chosen name before it goes into an error message."""
    return name if len(name) <= 64 else name[:64] + "..."


def parse_asset_id(raw: str, field: str = "assetId") -> str:
    """Ids become URL segments and log lines, so only a small, safe alphabet is accepted."""
    if not ASSET_ID_PATTERN.fullmatch(raw):
        raise invalid(
            field,
            "must be 1 to 128 characters: a letter or digit, then letters, digits or . _ : -",
        )
    return raw


def _asset_type(value: Any) -> str:
    if not isinstance(value, str) or not ASSET_TYPE_PATTERN.fullmatch(value):
        raise invalid("assetType", "must be 1 to 64 ASCII letters, digits or . _ -")
    return value


def _serial(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise invalid(field, "must be a string of 1 to 128 printable characters")
    if not PRINTABLE_PATTERN.fullmatch(value):
        raise invalid(
            field, "must contain only printable characters (no control or format characters)"
        )
    return value


def _device_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not DEVICE_ID_PATTERN.fullmatch(value):
        raise invalid(
            field,
            "must be 1 to 128 ASCII letters, digits or - . % _ * ? ! ( ) , : = @ $ '",
        )
    return value


def normalize_thumbprint(value: Any, field: str, *, sha1_only: bool = False) -> str:
    """Uppercase hex without separators: a SHA-256 or SHA-1 thumbprint (SHA-1 only if asked)."""
    pattern = SHA1_THUMBPRINT_PATTERN if sha1_only else THUMBPRINT_PATTERN
    if not isinstance(value, str) or not pattern.fullmatch(value):
        kinds = "" if sha1_only else "SHA-256 (64 hex digits) or "
        raise invalid(
            field,
            f"must be a {kinds}SHA-1 (40 hex digits) thumbprint, in either case; a colon or "
            "space may separate digits",
        )
    return THUMBPRINT_SEPARATORS.sub("", value).upper()


def _text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise invalid(field, f"must be a string of 1 to {max_chars} characters")
    if not TEXT_PATTERN.fullmatch(value):
        raise invalid(field, "must not contain control characters")
    return value


def _reject_unknown(body: Mapping[str, Any], known: Iterable[str], prefix: str = "") -> None:
    allowed = set(known)
    for key in body:
        if key not in allowed:
            raise invalid(f"{prefix}{shorten(key)}", "is not a known field")


def _require_object(value: Any, field: str) -> JsonObject:
    if not isinstance(value, dict):
        raise invalid(field, "must be a JSON object")
    return value


def _attributes(value: Any) -> JsonObject:
    attributes = _require_object(value, "attributes")
    if len(canonical_json(attributes).encode()) > MAX_ATTRIBUTES_BYTES:
        raise invalid("attributes", f"must serialize to at most {MAX_ATTRIBUTES_BYTES} bytes")
    return attributes


def _replacement(value: Any) -> ReplacementTerms:
    body = _require_object(value, "replacement")
    _reject_unknown(body, REPLACEMENT_FIELDS, "replacement.")
    if "oldDeviceId" not in body:
        raise invalid("replacement.oldDeviceId", "is required")
    if "reason" not in body:
        raise invalid("replacement.reason", "is required")
    serial = body.get("approvedSerial")
    thumbprint = body.get("approvedThumbprint")
    return ReplacementTerms(
        old_device_id=_device_id(body["oldDeviceId"], "replacement.oldDeviceId"),
        reason=_text(body["reason"], "replacement.reason", MAX_REASON_CHARS),
        approved_serial=None if serial is None else _serial(serial, "replacement.approvedSerial"),
        approved_thumbprint=None
        if thumbprint is None
        else normalize_thumbprint(thumbprint, "replacement.approvedThumbprint"),
    )


def parse_enum(kind: type[E], value: Any, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise invalid(field, f"must be one of: {allowed}") from None


def parse_asset_body(body: Any, asset_id: str) -> AssetDraft:
    """Validate a PUT body, or the document a merge patch produced; absent means default."""
    body = _require_object(body, "body")
    _reject_unknown(body, ASSET_FIELDS)
    if "assetId" in body and body["assetId"] != asset_id:
        raise invalid("assetId", "in the body must equal the assetId in the path")
    for key in REQUIRED_FIELDS:
        if key not in body:
            raise invalid(key, "is required")
    device_id = body.get("deviceId")
    raw_replacement = body.get("replacement")
    draft = AssetDraft(
        serial_number=_serial(body["serialNumber"], "serialNumber"),
        asset_type=_asset_type(body["assetType"]),
        location=_text(body["location"], "location", 256),
        status=parse_enum(AssetStatus, body.get("status", AssetStatus.PLANNED.value), "status"),
        device_id=None if device_id is None else _device_id(device_id, "deviceId"),
        provisioning_status=parse_enum(
            ProvisioningStatus,
            body.get("provisioningStatus", ProvisioningStatus.NOT_PROVISIONED.value),
            "provisioningStatus",
        ),
        replacement=None if raw_replacement is None else _replacement(raw_replacement),
        attributes=_attributes(body.get("attributes", {})),
    )
    _check_replacement_consistency(draft)
    return draft


def _check_replacement_consistency(draft: AssetDraft) -> None:
    """A replacement approval exists exactly while the asset is pendingReplacement.

    That it names the asset's own device is the service's check (a 409): for a merge patch the
    device is the asset's state, not the request's."""
    pending = draft.status is AssetStatus.PENDING_REPLACEMENT
    if pending and draft.replacement is None:
        raise invalid("replacement", "is required when status is pendingReplacement")
    if not pending and draft.replacement is not None:
        raise invalid("replacement", "must be null unless status is pendingReplacement")


def parse_put_body(body: Any, asset_id: str) -> AssetDraft:
    """A PUT body: an asset whose approval names its device needs that device in the body."""
    draft = parse_asset_body(body, asset_id)
    if draft.replacement is not None and draft.device_id is None:
        raise invalid("deviceId", "is required when status is pendingReplacement")
    return draft


def _replacement_patch(value: Any) -> None:
    """The terms a patch writes, each valid on its own; they are merged into the approval."""
    body = _require_object(value, "replacement")
    _reject_unknown(body, REPLACEMENT_FIELDS, "replacement.")
    for key in ("oldDeviceId", "reason"):
        if key in body and body[key] is None:
            raise invalid(f"replacement.{key}", "cannot be removed from an approval")
    if "oldDeviceId" in body:
        _device_id(body["oldDeviceId"], "replacement.oldDeviceId")
    if "reason" in body:
        _text(body["reason"], "replacement.reason", MAX_REASON_CHARS)
    if body.get("approvedSerial") is not None:
        _serial(body["approvedSerial"], "replacement.approvedSerial")
    if body.get("approvedThumbprint") is not None:
        normalize_thumbprint(body["approvedThumbprint"], "replacement.approvedThumbprint")


def _check_patch_approval(patch: JsonObject) -> None:
    """`status` and `replacement` travel together: pendingReplacement with the terms it approves,
    another status with no terms (leaving pendingReplacement withdraws the approval)."""
    if "replacement" in patch and "status" not in patch:
        raise invalid(
            "replacement", "needs status in the same patch (pendingReplacement to approve)"
        )
    if "status" not in patch:
        return
    pending = patch["status"] == AssetStatus.PENDING_REPLACEMENT.value
    if pending and patch.get("replacement") is None:
        raise invalid("replacement", "is required when status is pendingReplacement")
    if not pending and patch.get("replacement") is not None:
        raise invalid("replacement", "must be null unless status is pendingReplacement")


def check_patch(body: Any) -> JsonObject:
    """A merge patch: an object that leaves server-owned members alone, each member valid on its
    own. Checked before If-Match, so a malformed patch is a 400 whatever version it names; what
    depends on the asset (the merged document's rules) is checked once it is merged."""
    patch = _require_object(body, "body")
    for key in READ_ONLY_FIELDS:
        if key in patch:
            hint = (
                " (link devices with POST /assets/{assetId}/devices)" if key == "deviceId" else ""
            )
            raise invalid(key, f"is read-only and cannot be patched{hint}")
    _reject_unknown(patch, ASSET_FIELDS)
    for key, value in patch.items():
        if value is None:
            if key not in REMOVABLE_BY_PATCH:
                raise invalid(key, "cannot be removed (a merge patch null deletes the member)")
            continue
        match key:
            case "serialNumber":
                _serial(value, key)
            case "assetType":
                _asset_type(value)
            case "location":
                _text(value, key, 256)
            case "status":
                parse_enum(AssetStatus, value, key)
            case "provisioningStatus":
                parse_enum(ProvisioningStatus, value, key)
            case "attributes":
                _require_object(value, key)
            case "replacement":
                _replacement_patch(value)
    _check_patch_approval(patch)
    return patch


@dataclass(frozen=True)
class LinkRequest:
    """A link as the device's onboarding flow reports it; thumbprints are normalized."""

    device_id: str
    registration_id: str
    thumbprint: str | None = None
    sha1_thumbprint: str | None = None
    serial_number: str | None = None
    replacement_for: str | None = None
    device_reason: str | None = None


def _device_reason(value: Any) -> str:
    """The device's own account is untrusted: short, and nothing that could spoof a log line."""
    field = "deviceReason"
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DEVICE_REASON_CHARS:
        raise invalid(field, f"must be a string of 1 to {MAX_DEVICE_REASON_CHARS} characters")
    if not PRINTABLE_PATTERN.fullmatch(value):
        raise invalid(
            field, "must contain only printable characters (no control or format characters)"
        )
    return value


def _link_thumbprints(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    raw, raw_sha1 = body.get("thumbprint"), body.get("sha1Thumbprint")
    thumbprint = None if raw is None else normalize_thumbprint(raw, "thumbprint")
    sha1 = (
        None
        if raw_sha1 is None
        else normalize_thumbprint(raw_sha1, "sha1Thumbprint", sha1_only=True)
    )
    # One certificate has one SHA-1, sent once: two would let a claim match either. Refusing a
    # second copy even when equal keeps the rule one a schema can state (no member equality).
    thumbprint_is_sha1 = thumbprint is not None and len(thumbprint) == SHA1_HEX_DIGITS
    if sha1 is not None and thumbprint_is_sha1:
        raise invalid("sha1Thumbprint", "must be null or absent when thumbprint is a SHA-1")
    return thumbprint, sha1


def parse_link_request(body: Any) -> LinkRequest:
    body = _require_object(body, "body")
    _reject_unknown(body, LINK_FIELDS)
    for key in ("deviceId", "registrationId"):
        if key not in body:
            raise invalid(key, "is required")
    registration_id = body["registrationId"]
    if not isinstance(registration_id, str) or not REGISTRATION_ID_PATTERN.fullmatch(
        registration_id
    ):
        raise invalid("registrationId", "must be 1 to 128 ASCII letters, digits or - . _ :")
    thumbprint, sha1_thumbprint = _link_thumbprints(body)
    serial = body.get("serialNumber")
    replacement_for = body.get("replacementFor")
    device_reason = body.get("deviceReason")
    return LinkRequest(
        device_id=_device_id(body["deviceId"], "deviceId"),
        registration_id=registration_id,
        thumbprint=thumbprint,
        sha1_thumbprint=sha1_thumbprint,
        serial_number=None if serial is None else _serial(serial, "serialNumber"),
        replacement_for=None
        if replacement_for is None
        else _device_id(replacement_for, "replacementFor"),
        device_reason=None if device_reason is None else _device_reason(device_reason),
    )


@dataclass(frozen=True)
class ListQuery:
    device_id: str | None = None
    serial_number: str | None = None
    location_prefix: str | None = None
    limit: int = DEFAULT_PAGE_SIZE
    after: str | None = None


def query_values(pairs: Iterable[tuple[str, str]], known: Sequence[str]) -> dict[str, str]:
    """Strict on purpose: a misspelt filter must fail loudly, not silently list everything."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            allowed = ", ".join(known)
            raise invalid(shorten(name), f"is not a known query parameter (use {allowed})")
        if name in values:
            raise invalid(name, "must be given at most once")
        values[name] = value
    return values


def page_limit(values: Mapping[str, str], default: int, maximum: int) -> int:
    """The `limit` query parameter: 1 to `maximum`, `default` when absent."""
    raw = values.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid("limit", f"must be an integer from 1 to {maximum}")
    return int(raw)


def parse_list_query(pairs: Iterable[tuple[str, str]]) -> ListQuery:
    values = query_values(pairs, LIST_PARAMETERS)
    limit = page_limit(values, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    device_id = values.get("deviceId")
    serial = values.get("serialNumber")
    location = values.get("location")
    after = values.get("after")
    return ListQuery(
        device_id=None if device_id is None else _device_id(device_id, "deviceId"),
        serial_number=None if serial is None else _serial(serial, "serialNumber"),
        location_prefix=None if location is None else _text(location, "location", 256),
        limit=limit,
        after=None if after is None else parse_asset_id(after, "after"),
    )
