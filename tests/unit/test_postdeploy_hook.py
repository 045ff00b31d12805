"""infra/hooks/postdeploy.sh, run with stand-ins for az, azd and Python on PATH: what it asks
Azure for, in which order, that it stops at the first failure, and what the two operator
commands receive: exactly the settings they read, mapped from the azd outputs, the function key
only through a private file that is gone afterwards, and nothing of the app's identity."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "infra" / "hooks" / "postdeploy.sh"
SITE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/func-x"
TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/evgt-x"
FUNCTION_KEY = "fk-Secret-0123456789abcdefABCDEF=="
ASSET_KEY = "ak-Secret-9876543210"
POLICY = "policies/mine.toml"
# What `azd provision` leaves in the environment (infra/main.bicep's outputs, and what the
# operator set with `azd env set`).
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg",
    "FUNCTION_APP_NAME": "func-x",
    "FUNCTION_APP_ID": SITE,
    "FUNCTION_APP_HOST": "func-x.azurewebsites.net",
    "EVENT_GRID_TOPIC_ID": TOPIC,
    "DPS_NAME": "provs-x",
    "DPS_SERVICE_HOST": "provs-x.azure-devices-provisioning.net",
    "DPS_DEVICE_HOST": "global.azure-devices-provisioning.net",
    "DPS_ID_SCOPE": "0ne000ABCDE",
    "IOT_HUB_NAMES": "hub-a,hub-b",
    "IOT_HUB_HOST_NAMES": "hub-a.azure-devices.net,hub-b.azure-devices.net",
    "AzureWebJobsStorage__queueServiceUri": "https://stx.queue.core.windows.net/",
    "AzureWebJobsStorage__tableServiceUri": "https://stx.table.core.windows.net/",
    "AzureWebJobsStorage__blobServiceUri": "https://stx.blob.core.windows.net/",
    "AUDIT_TABLE": "audit",
    "ASSET_API_URL": "https://assets.example",
    "ASSET_API_AUDIENCE": "api://assets",
    "KEY_VAULT_NAME": "kv-x",
    "ASSET_API_KEY_SECRET_NAME": "asset-api-key",
    "APP_IDENTITY_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "POLICY_FILE": POLICY,
}
# Each stand-in appends its name and arguments to $CALLS; `az functionapp function show` fails
# until $INDEXED_AFTER calls have been made, as a fresh deployment is indexed late. The Python
# stand-in also keeps, per call, its whole environment and what the key file held and its mode.
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
if [[ "$(basename "$0")" == azd ]]; then
  printf '%s\\n' {outputs}
fi
if [[ "$*" == "functionapp function show"* ]]; then
  count=$(grep -c "functionapp function show" "$CALLS")
  [[ "$count" -gt "${{INDEXED_AFTER:-0}}" ]] || exit 3
fi
if [[ "$*" == "functionapp function keys list"* ]]; then
  [[ -z "${{KEYS_FAIL:-}}" ]] || exit 5
  cat "$STAND_IN_SECRETS/function-key"
fi
if [[ "$*" == "keyvault secret show"* ]]; then
  cat "$STAND_IN_SECRETS/asset-key"
fi
if [[ "$*" == *"-m operator_cli"* ]]; then
  n=$(grep -c "operator_cli" "$CALLS")
  env -0 > "$CALLS.env.$n"
  if [[ -n "${{ALLOCATION_FUNCTION_KEY_FILE:-}}" ]]; then
    echo "$ALLOCATION_FUNCTION_KEY_FILE" > "$CALLS.keypath.$n"
    stat -c %a "$ALLOCATION_FUNCTION_KEY_FILE" > "$CALLS.keymode.$n"
    cat "$ALLOCATION_FUNCTION_KEY_FILE" > "$CALLS.key.$n"
  fi
fi
if [[ "$*" == *"enrollment apply" ]]; then exit "${{APPLY_FAILS:-0}}"; fi
if [[ "$*" == *" smoke" ]]; then exit "${{SMOKE_FAILS:-0}}"; fi
exit 0
"""
TRUSTING_POLICY = 'version = "mine"\n[trust]\nenrollment_groups = ["plant-7", "smoke-x509"]\n'


class Run:
    def __init__(self, code: int, calls: list[str], out: str, err: str, calls_file: Path):
        self.code, self.calls, self.out, self.err = code, calls, out, err
        self._calls_file = calls_file

    def command_env(self, number: int) -> dict[str, str]:
        """The environment the n-th operator_cli call (from 1) ran with."""
        raw = Path(f"{self._calls_file}.env.{number}").read_bytes().decode()
        return dict(entry.split("=", 1) for entry in raw.split("\0") if entry)

    def key_seen(self, number: int) -> tuple[str, str, str] | None:
        """(the key file's path, its mode, what it held) as the n-th call saw them."""
        path = Path(f"{self._calls_file}.keypath.{number}")
        if not path.exists():
            return None
        read = [
            Path(f"{self._calls_file}.{what}.{number}").read_text().strip()
            for what in ("keypath", "keymode", "key")
        ]
        return read[0], read[1], read[2]


def run_hook(
    tmp_path: Path,
    *,
    with_outputs: bool = True,
    policy: str | None = TRUSTING_POLICY,
    drop: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    **more_env: str,
) -> Run:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = {k: v for k, v in OUTPUTS.items() if k not in drop}
    quoted = " ".join(f"'{key}=\"{value}\"'" for key, value in outputs.items())
    for tool in ("az", "azd", "python-stand-in"):
        path = bin_dir / tool
        path.write_text(STAND_IN.format(outputs=quoted))
        path.chmod(0o755)
    if policy is not None:
        (tmp_path / "policies").mkdir()
        (tmp_path / POLICY).write_text(policy)
    # What az answers with, kept in files: in the environment, every command would inherit it.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "function-key").write_text(FUNCTION_KEY + "\n")
    (secrets / "asset-key").write_text(ASSET_KEY + "\n")
    calls = tmp_path / "calls"
    calls.touch()
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "PYTHON": str(bin_dir / "python-stand-in"),
        "FUNCTION_WAIT_SECONDS": "0",
        "STAND_IN_SECRETS": str(secrets),
        "TMPDIR": str(tmp_path / "tmp"),
        **(outputs if with_outputs else {}),
        **(env or {}),
        **more_env,
    }
    (tmp_path / "tmp").mkdir()
    done = subprocess.run(
        ["bash", str(HOOK)], env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    return Run(done.returncode, calls.read_text().splitlines(), done.stdout, done.stderr, calls)


def operator_calls(run: Run) -> list[str]:
    return [call for call in run.calls if "operator_cli" in call]


def test_it_subscribes_asset_changed_then_applies_enrollments_then_runs_the_smoke(tmp_path):
    run = run_hook(tmp_path, INDEXED_AFTER="2")
    assert run.code == 0, run.err
    calls = run.calls
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
    assert rest[1] == (
        "az functionapp function keys list --resource-group rg --name func-x "
        "--function-name allocate --query default --output tsv"
    )
    assert rest[2:] == [
        "python-stand-in -m operator_cli enrollment apply",
        "python-stand-in -m operator_cli smoke",
    ]


def test_run_by_hand_it_reads_the_environment_from_azd(tmp_path):
    run = run_hook(tmp_path, with_outputs=False)
    assert run.code == 0, run.err
    assert run.calls[0] == "azd env get-values"
    assert any(f"--endpoint {SITE}/functions/asset_changed" in call for call in run.calls)
    assert run.command_env(2)["DPS_ID_SCOPE"] == OUTPUTS["DPS_ID_SCOPE"]


def test_it_subscribes_nothing_when_the_function_never_appears(tmp_path):
    run = run_hook(tmp_path, INDEXED_AFTER="99", FUNCTION_WAIT_ATTEMPTS="3")
    assert run.code == 1
    assert not any("eventgrid" in call or "operator_cli" in call for call in run.calls)


def test_a_failed_enrollment_apply_stops_before_the_smoke(tmp_path):
    run = run_hook(tmp_path, APPLY_FAILS="4")
    assert run.code == 4
    assert run.calls[-1].endswith("enrollment apply")


def test_each_step_after_the_subscription_can_be_left_out(tmp_path):
    run = run_hook(tmp_path, SKIP_ENROLLMENT_APPLY="true", SKIP_SMOKE="true")
    assert run.code == 0
    assert not any("operator_cli" in call or "keys list" in call for call in run.calls)


# What each command reads (operator_cli/dps_config.py, smoke_config.py, hub_config.py, config.py)
# and may get.
APPLY_ENV = {
    "AZURE_TOKEN_CREDENTIALS": "dev",
    "DPS_SERVICE_HOST": OUTPUTS["DPS_SERVICE_HOST"],
    "ALLOCATION_WEBHOOK_URL": "https://func-x.azurewebsites.net/api/allocate",
}
SMOKE_ENV = {
    "AZURE_TOKEN_CREDENTIALS": "dev",
    "DPS_SERVICE_HOST": OUTPUTS["DPS_SERVICE_HOST"],
    "DPS_ID_SCOPE": OUTPUTS["DPS_ID_SCOPE"],
    "DPS_DEVICE_ENDPOINT": "global.azure-devices-provisioning.net",
    "IOT_HUB_MANAGED_IDENTITY_HUBS": OUTPUTS["IOT_HUB_HOST_NAMES"],
    "AzureWebJobsStorage__queueServiceUri": OUTPUTS["AzureWebJobsStorage__queueServiceUri"],
    "AzureWebJobsStorage__tableServiceUri": OUTPUTS["AzureWebJobsStorage__tableServiceUri"],
    "AzureWebJobsStorage__blobServiceUri": OUTPUTS["AzureWebJobsStorage__blobServiceUri"],
    "AUDIT_TABLE": "audit",
    "ASSET_API_URL": "https://assets.example",
}
# A shell may hold any of these (a CI job's AZURE_CLIENT_ID, a local stack's settings): were they
# passed on, the commands would ask for a managed identity, use SAS, or trust another CA.
NEVER_PASSED = {
    "AZURE_CLIENT_ID": "99999999-9999-9999-9999-999999999999",
    "AZURE_CLIENT_SECRET": "not-for-the-cli",
    "AZURE_FEDERATED_TOKEN_FILE": "/tmp/token",
    "DPS_CONNECTION_STRING": "HostName=local;SharedAccessKeyName=p;SharedAccessKey=eA==",
    "DPS_CA_BUNDLE": "/tmp/ca.pem",
    "IOT_HUB_CONNECTION_STRINGS": '{"h": "HostName=h;SharedAccessKeyName=p;SharedAccessKey=eA=="}',
    "IOT_HUB_ENDPOINTS": '{"hub": "localhost:1"}',
    "IOT_HUB_CA_BUNDLE": "/tmp/ca.pem",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "99999999-9999-9999-9999-999999999999",
    "ALLOCATION_FUNCTION_KEY": "a-key-on-the-environment",
}
# Every variable each command reads (docs/enrollment-and-smoke.md, "The environment"), plus
# what DefaultAzureCredential reads to pick an identity. The other azd outputs pass through
# unread.
CREDENTIAL_NAMES = {
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
}
READ_BY_APPLY = CREDENTIAL_NAMES | {
    "DPS_CONNECTION_STRING",
    "DPS_SERVICE_HOST",
    "DPS_CA_BUNDLE",
    "ALLOCATION_WEBHOOK_URL",
    "ALLOCATION_FUNCTION_KEY",
    "ALLOCATION_FUNCTION_KEY_FILE",
    "ENROLLMENT_GROUPS_DIR",
    "ENROLLMENT_CA_DIR",
    "ENROLLMENT_LOCAL_CA_DIR",
}
READ_BY_SMOKE = (
    CREDENTIAL_NAMES
    | {"DPS_CONNECTION_STRING", "DPS_SERVICE_HOST", "DPS_CA_BUNDLE", "ENROLLMENT_LOCAL_CA_DIR"}
    | set(SMOKE_ENV)
    | {"DPS_DEVICE_ENDPOINT", "SMOKE_GROUP_FILE", "SMOKE_ASSET_ID", "SMOKE_ASSET_TYPE"}
    | {"SMOKE_ASSET_LOCATION", "SMOKE_TIMEOUT_SECONDS"}
    | {"IOT_HUB_CONNECTION_STRINGS", "IOT_HUB_ENDPOINTS", "IOT_HUB_CA_BUNDLE"}
    | {"ASSET_API_KEY", "ASSET_API_AUDIENCE", "STORAGE_CA_BUNDLE"}
    | {name for name in NEVER_PASSED if name.startswith("AzureWebJobsStorage")}
)


def test_the_commands_get_exactly_their_settings_from_the_azd_outputs(tmp_path):
    run = run_hook(tmp_path, env=NEVER_PASSED)
    assert run.code == 0, run.err
    apply, smoke = run.command_env(1), run.command_env(2)
    key_file = apply.pop("ALLOCATION_FUNCTION_KEY_FILE", None)
    assert key_file, "enrollment apply gets a key file"
    assert {k: v for k, v in apply.items() if k in READ_BY_APPLY} == APPLY_ENV
    expected_smoke = {**SMOKE_ENV, "ASSET_API_AUDIENCE": "api://assets"}
    assert {k: v for k, v in smoke.items() if k in READ_BY_SMOKE} == expected_smoke
    assert "ALLOCATION_FUNCTION_KEY_FILE" not in smoke, "the smoke gets no key"
    for name in NEVER_PASSED:
        assert name not in apply, f"{name} reached enrollment apply"
        assert name not in smoke, f"{name} reached the smoke"


def test_the_operator_own_smoke_and_enrollment_settings_pass_through(tmp_path):
    mine = {
        "SMOKE_ASSET_ID": "SMOKE-0002",
        "SMOKE_TIMEOUT_SECONDS": "300",
        "ENROLLMENT_LOCAL_CA_DIR": "/srv/smoke-ca",
    }
    run = run_hook(tmp_path, env=mine)
    assert run.code == 0, run.err
    smoke = run.command_env(2)
    assert {name: smoke.get(name) for name in mine} == mine
    assert run.command_env(1)["ENROLLMENT_LOCAL_CA_DIR"] == "/srv/smoke-ca"


def test_the_app_identity_never_reaches_the_commands(tmp_path):
    # azd's outputs name the app's client id; no command may take it for its own credential.
    run = run_hook(tmp_path, AZURE_CLIENT_ID=OUTPUTS["APP_IDENTITY_CLIENT_ID"])
    assert run.code == 0, run.err
    for number in (1, 2):
        environment = run.command_env(number)
        assert "AZURE_CLIENT_ID" not in environment
        assert OUTPUTS["APP_IDENTITY_CLIENT_ID"] not in {
            value for name, value in environment.items() if name != "APP_IDENTITY_CLIENT_ID"
        }
        assert environment["AZURE_TOKEN_CREDENTIALS"] == "dev"


def test_the_function_key_reaches_enrollment_apply_only_through_a_private_file(tmp_path):
    run = run_hook(tmp_path)
    assert run.code == 0, run.err
    seen = run.key_seen(1)
    assert seen is not None, "enrollment apply was given a key file"
    path, mode, content = seen
    assert content == FUNCTION_KEY
    assert mode == "600"
    assert not Path(path).exists(), "the key file is removed afterwards"
    assert not any(Path(path).parent.parent.iterdir()), "nothing is left in the temp directory"
    for number in (1, 2):
        assert FUNCTION_KEY not in "\n".join(
            f"{k}={v}" for k, v in run.command_env(number).items()
        ), "the key is in no variable"
    assert FUNCTION_KEY not in run.out
    assert FUNCTION_KEY not in run.err
    assert not any(FUNCTION_KEY in call for call in run.calls), "the key is on no command line"


@pytest.mark.parametrize("failure", [{"APPLY_FAILS": "4"}, {"SMOKE_FAILS": "1"}])
def test_the_key_file_is_removed_when_a_command_fails(tmp_path, failure):
    run = run_hook(tmp_path, env=failure)
    assert run.code != 0
    seen = run.key_seen(1)
    assert seen is not None
    assert not Path(seen[0]).exists()
    assert FUNCTION_KEY not in run.out
    assert FUNCTION_KEY not in run.err


def test_without_a_function_key_nothing_is_applied(tmp_path):
    run = run_hook(tmp_path, KEYS_FAIL="1")
    assert run.code != 0
    assert operator_calls(run) == []


def test_with_an_api_key_the_smoke_reads_it_from_key_vault_and_shows_it_nowhere(tmp_path):
    run = run_hook(tmp_path, ASSET_API_AUDIENCE="")
    assert run.code == 0, run.err
    assert any(
        call.startswith("az keyvault secret show --vault-name kv-x --name asset-api-key")
        for call in run.calls
    )
    smoke = run.command_env(2)
    assert smoke["ASSET_API_KEY"] == ASSET_KEY
    assert "ASSET_API_AUDIENCE" not in smoke
    assert "ASSET_API_KEY" not in run.command_env(1)
    assert ASSET_KEY not in run.out
    assert ASSET_KEY not in run.err
    assert not any(ASSET_KEY in call for call in run.calls), "the key is on no command line"


def test_it_refuses_the_smoke_under_the_demo_policy(tmp_path):
    run = run_hook(tmp_path, POLICY_FILE="policies/demo.toml")
    assert run.code == 1
    assert "demo policy" in run.err
    assert "SKIP_SMOKE" in run.err
    assert not any(call.endswith(" smoke") for call in run.calls)


def test_without_a_policy_setting_it_assumes_the_demo_policy(tmp_path):
    run = run_hook(tmp_path, drop=("POLICY_FILE",))
    assert run.code == 1
    assert "demo policy" in run.err


def test_it_refuses_the_smoke_when_the_policy_does_not_trust_the_smoke_group(tmp_path):
    run = run_hook(tmp_path, policy='[trust]\nenrollment_groups = ["plant-7"]\n')
    assert run.code == 1
    assert '"smoke-x509"' in run.err
    assert not any(call.endswith(" smoke") for call in run.calls)


def test_the_demo_policy_does_not_stop_a_deploy_without_the_smoke(tmp_path):
    run = run_hook(tmp_path, POLICY_FILE="policies/demo.toml", SKIP_SMOKE="true")
    assert run.code == 0, run.err
    assert operator_calls(run) == ["python-stand-in -m operator_cli enrollment apply"]


def test_every_azd_value_the_hook_is_given_here_is_an_output_of_the_template():
    # The stand-in values above are what the hook maps; each must be something azd really has.
    outputs = set(
        re.findall(r"^output (\w+) ", (REPO / "infra" / "main.bicep").read_text(), re.MULTILINE)
    )
    assert set(OUTPUTS) <= outputs, f"not an output of infra/main.bicep: {set(OUTPUTS) - outputs}"
    read = set(re.findall(r"\$\{([A-Z]\w+)", HOOK.read_text()))  # lower case: its own
    set_by_the_operator = {"PYTHON", "SKIP_ENROLLMENT_APPLY", "SKIP_SMOKE", "ASSET_API_KEY"}
    waits = {"FUNCTION_WAIT_ATTEMPTS", "FUNCTION_WAIT_SECONDS"}
    own = {"DEMO_POLICY", "WEBHOOK_FUNCTION", "SMOKE_GROUP_ID", "FUNCTION_NAME"}
    unknown = read - outputs - set_by_the_operator - waits - own
    assert not unknown, f"the hook reads values no output provides: {unknown}"
