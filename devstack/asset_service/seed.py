"""The demo fleet a fresh devstack starts with, read from seed_assets.json beside this module."""

from __future__ import annotations

import json
from pathlib import Path

from .model import AssetDraft
from .validation import parse_asset_body, parse_asset_id

SEED_FILE = Path(__file__).with_name("seed_assets.json")


def load_fleet(path: Path = SEED_FILE) -> list[tuple[str, AssetDraft]]:
    """Validated like any PUT body, so a bad seed entry fails start-up with its field named."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    fleet: list[tuple[str, AssetDraft]] = []
    for entry in entries:
        asset_id = parse_asset_id(entry["assetId"])
        fleet.append((asset_id, parse_asset_body(entry, asset_id)))
    return fleet
