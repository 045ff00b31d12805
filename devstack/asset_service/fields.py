"""The asset's members, named once: validation, the JSON, the change events and the SQLite
columns all derive theirs from here.

Each member is spelt in camelCase in the API; the dataclass attribute (model.AssetDraft,
model.ReplacementTerms) and the SQLite column that hold it are its snake_case spelling.
"""

from __future__ import annotations

import functools
import re

# What a client writes (PUT sets them, a merge patch edits them), in the order the API lists them.
CONTENT_FIELDS = (
    "serialNumber",
    "assetType",
    "location",
    "status",
    "deviceId",
    "provisioningStatus",
    "replacement",
    "attributes",
)
REQUIRED_FIELDS = ("serialNumber", "assetType", "location")
# Server-stamped members a client may echo back from a GET; their values are ignored.
STAMPED_FIELDS = ("version", "updatedAt")
ASSET_FIELDS = ("assetId", *CONTENT_FIELDS, *STAMPED_FIELDS)
# deviceId changes only through a device link.
READ_ONLY_FIELDS = ("assetId", *STAMPED_FIELDS, "deviceId")
# A merge patch may null these out only where the API has a meaning for "absent".
REMOVABLE_BY_PATCH = ("attributes", "replacement")

# What an approver decides about a replacement, in the order the API lists them.
REPLACEMENT_TERMS = ("oldDeviceId", "approvedSerial", "approvedThumbprint", "reason")
# A replacement as written: its terms, and the approval time a client may echo back.
REPLACEMENT_FIELDS = (*REPLACEMENT_TERMS, "approvedAt")

_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")


@functools.cache
def snake_case(member: str) -> str:
    """The attribute and column name of an API member: serialNumber -> serial_number."""
    return _WORD_START.sub("_", member).lower()
