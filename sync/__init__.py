"""Assets and device twins kept in sync both ways, by one field-ownership table, without echoes.

The triggers live in sync.blueprint, imported only by function_app.
"""

from sync.asset_sync_service import AssetSyncOutcome, AssetToTwinSync
from sync.asset_to_twin import TwinPlan, plan_twin_update
from sync.device_sync_service import BatchOutcome, RawTwinEvent, TwinToAssetSync
from sync.events import (
    AssetEvent,
    InvalidEvent,
    TwinChange,
    asset_event_from,
    twin_change_from,
    twin_change_from_record,
    twin_change_record,
)
from sync.ownership import FIELD_OWNERSHIP, FieldRule, Owner
from sync.twin_to_asset import AssetPlan, InvalidValue, is_own_echo, plan_asset_update

__all__ = [
    "FIELD_OWNERSHIP",
    "AssetEvent",
    "AssetPlan",
    "AssetSyncOutcome",
    "AssetToTwinSync",
    "BatchOutcome",
    "FieldRule",
    "InvalidEvent",
    "InvalidValue",
    "Owner",
    "RawTwinEvent",
    "TwinChange",
    "TwinPlan",
    "TwinToAssetSync",
    "asset_event_from",
    "is_own_echo",
    "plan_asset_update",
    "plan_twin_update",
    "twin_change_from",
    "twin_change_from_record",
    "twin_change_record",
]
