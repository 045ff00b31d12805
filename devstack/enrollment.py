"""Load enrollment groups into the DPS emulator through the operator CLI's own command.

The local stack and the journey tests create their groups exactly as a deployment does:
`python -m operator_cli enrollment apply` against the emulator's service API, with the
emulator's connection string, the webhook URL and the function key in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operator_cli.enrollment_files import load_templates
from operator_cli.local_ca import ca_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVSTACK_GROUPS = REPO_ROOT / "enrollment" / "devstack"
DEPLOYED_GROUPS = REPO_ROOT / "enrollment" / "groups"
_CLI_ENV = (
    "DPS_CONNECTION_STRING",
    "DPS_SERVICE_HOST",
    "DPS_CA_BUNDLE",
    "ALLOCATION_WEBHOOK_URL",
    "ALLOCATION_FUNCTION_KEY",
    "ALLOCATION_FUNCTION_KEY_FILE",
    "ENROLLMENT_GROUPS_DIR",
    "ENROLLMENT_CA_DIR",
    "ENROLLMENT_LOCAL_CA_DIR",
)


class EnrollmentApplyFailed(RuntimeError):
    """`enrollment apply` exited non-zero; the message holds its output."""


@dataclass(frozen=True)
class AppliedGroup:
    """A group the command created or kept, and the local CA that signs its devices."""

    group_id: str
    record_path: Path
    ca_cert: Path
    ca_key: Path


def cli_environment(
    dps_info: dict[str, Any], *, webhook_url: str, function_key: str | None
) -> dict[str, str]:
    """What the CLI reads to reach the emulator, as azd's hook gives it for Azure."""
    env = {name: value for name, value in os.environ.items() if name not in _CLI_ENV}
    env["DPS_CONNECTION_STRING"] = dps_info["serviceConnectionString"]
    env["DPS_CA_BUNDLE"] = dps_info["tlsCaCert"]
    env["ALLOCATION_WEBHOOK_URL"] = webhook_url
    if function_key:
        env["ALLOCATION_FUNCTION_KEY"] = function_key
    return env


def apply_groups(
    dps_info: dict[str, Any],
    *,
    groups_dirs: Sequence[Path],
    local_ca_dir: Path,
    webhook_url: str,
    function_key: str | None,
    data_dir: Path,
) -> list[AppliedGroup]:
    """Run the command; the groups' files in the emulator's data dir and their local CAs."""
    args = [sys.executable, "-m", "operator_cli", "enrollment", "apply"]
    for directory in groups_dirs:
        args += ["--groups-dir", str(directory)]
    args += ["--local-ca-dir", str(local_ca_dir)]
    done = subprocess.run(
        args,
        cwd=REPO_ROOT,
        env=cli_environment(dps_info, webhook_url=webhook_url, function_key=function_key)
        | {"COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise EnrollmentApplyFailed(
            f"enrollment apply exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    applied = []
    for template in load_templates(list(groups_dirs)):
        ref = template.certificates.get("primary")
        if ref is None or ref.kind != "local-ca":
            continue
        cert, key = ca_paths(local_ca_dir, ref.value)
        record = data_dir / "enrollment-groups" / f"{template.group_id}.json"
        applied.append(AppliedGroup(template.group_id, record, cert, key))
    return applied
