"""infra/hooks/postdeploy.sh, run with stand-ins for az, azd and Python on PATH: what it asks
Azure for, in which order, and that it stops at the first failure."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "infra" / "hooks" / "postdeploy.sh"
SITE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/func-x"
TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/evgt-x"
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg",
    "FUNCTION_APP_NAME": "func-x",
    "FUNCTION_APP_ID": SITE,
    "EVENT_GRID_TOPIC_ID": TOPIC,
}
# Each stand-in appends its name and arguments to $CALLS; `az functionapp function show` fails
# until $INDEXED_AFTER calls have been made, as a fresh deployment is indexed late.
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
if [[ "$(basename "$0")" == azd ]]; then
  printf '%s\\n' {outputs}
fi
if [[ "$*" == "functionapp function show"* ]]; then
  count=$(grep -c "functionapp function show" "$CALLS")
  [[ "$count" -gt "${{INDEXED_AFTER:-0}}" ]] || exit 3
fi
if [[ "$*" == *"enrollment apply" ]]; then exit "${{APPLY_FAILS:-0}}"; fi
exit 0
"""


def run_hook(tmp_path: Path, *, with_outputs: bool = True, **env: str) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    quoted = " ".join(f"'{key}=\"{value}\"'" for key, value in OUTPUTS.items())
    for tool in ("az", "azd", "python-stand-in"):
        path = bin_dir / tool
        path.write_text(STAND_IN.format(outputs=quoted))
        path.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "PYTHON": str(bin_dir / "python-stand-in"),
        "FUNCTION_WAIT_SECONDS": "0",
        **(OUTPUTS if with_outputs else {}),
        **env,
    }
    done = subprocess.run(
        ["bash", str(HOOK)], env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    return done.returncode, calls.read_text().splitlines()


def test_it_subscribes_asset_changed_then_applies_enrollments_then_runs_the_smoke(tmp_path):
    code, calls = run_hook(tmp_path, INDEXED_AFTER="2")
    assert code == 0
    waits = [call for call in calls if call.startswith("az functionapp function show")]
    assert len(waits) == 3, "it waits for the function to be indexed"
    assert "--function-name asset_changed" in waits[0]
    rest = calls[len(waits) :]
    assert rest[0].startswith("az eventgrid event-subscription create")
    for argument in (
        f"--source-resource-id {TOPIC}",
        "--endpoint-type azurefunction",
        f"--endpoint {SITE}/functions/asset_changed",
        "--event-delivery-schema cloudeventschemav1_0",
    ):
        assert argument in rest[0]
    assert rest[1:] == [
        "python-stand-in -m operator_cli enrollment apply",
        "python-stand-in -m operator_cli smoke",
    ]


def test_run_by_hand_it_reads_the_environment_from_azd(tmp_path):
    code, calls = run_hook(tmp_path, with_outputs=False)
    assert code == 0
    assert calls[0] == "azd env get-values"
    assert any(f"--endpoint {SITE}/functions/asset_changed" in call for call in calls)


def test_it_subscribes_nothing_when_the_function_never_appears(tmp_path):
    code, calls = run_hook(tmp_path, INDEXED_AFTER="99", FUNCTION_WAIT_ATTEMPTS="3")
    assert code == 1
    assert not any("eventgrid" in call or "operator_cli" in call for call in calls)


def test_a_failed_enrollment_apply_stops_before_the_smoke(tmp_path):
    code, calls = run_hook(tmp_path, APPLY_FAILS="4")
    assert code == 4
    assert calls[-1].endswith("enrollment apply")


def test_each_step_after_the_subscription_can_be_left_out(tmp_path):
    code, calls = run_hook(tmp_path, SKIP_ENROLLMENT_APPLY="true", SKIP_SMOKE="true")
    assert code == 0
    assert not any("operator_cli" in call for call in calls)
