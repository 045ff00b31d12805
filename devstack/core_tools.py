"""A local.settings.json for Core Tools' `func start` against the running stack.

`python -m devstack up --core-tools` starts every part but the functions host and writes this
file into the data dir; copied over the repository's local.settings.json, it points Core Tools
at the stack's Azurite (blob, queue and table), asset service and IoT Hub emulator. It holds
the stack's keys, so it is written for its owner alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

CORE_TOOLS_SETTINGS = "core-tools.local.settings.json"


def write_core_tools_settings(path: Path, values: Mapping[str, str], port: int) -> Path:
    """Write `values` as local.settings.json's Values, with Core Tools' port; returns path."""
    document = {
        "IsEncrypted": False,
        "Values": dict(sorted(values.items())),
        "Host": {"LocalHttpPort": port},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
    path.chmod(0o600)
    return path
