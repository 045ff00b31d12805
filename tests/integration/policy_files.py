"""Policy files for tests: the demo policy with a few keys changed, where a host reads it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "policies" / "demo.toml"


def policy_file(
    path: Path, *, groups: Sequence[str] | None = None, **keys: str | int | float | bool
) -> Path:
    """The demo policy, serving `groups` and with each `key = value` line replaced.

    Keys must already appear once in the demo policy (each key is unique there); a key that
    does not is an error, so a renamed key cannot silently stop a test from testing anything.
    """
    literals = {key: json.dumps(value) for key, value in keys.items()}  # JSON scalars are TOML
    if groups is not None:
        literals["enrollment_groups"] = json.dumps(list(groups))
    text = DEMO.read_text()
    for key, literal in literals.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {literal}", text, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"{key} appears {count} times in {DEMO}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
