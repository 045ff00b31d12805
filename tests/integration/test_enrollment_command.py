"""`python -m operator_cli enrollment plan|apply|list` against the DPS emulator's service API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.certificates import TestCertificateAuthority
from devstack.processes import Child, stop_children
from devstack.tls import DevstackTls, ensure_tls
from operator_cli.dps_auth import DpsConnectionString, SasAuth, parse_connection_string
from operator_cli.dps_service import DpsService, DpsServiceError
from tests.integration.journey_fixtures import start_dps_emulator

REPO = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "k3y-that-must-never-show_0123456789"
WEBHOOK = "https://func.example.test/api/allocate"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, DevstackTls]]:
    base = tmp_path_factory.mktemp("enrollment-command")
    tls = ensure_tls(base)
    child = start_dps_emulator(base / "run", base / "dps", tls)
    try:
        yield child, tls
    finally:
        stop_children([child])


@pytest.fixture
def groups_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "groups"
    directory.mkdir()
    shutil.copy(REPO / "enrollment" / "groups" / "smoke-x509.json", directory)
    record = json.loads((REPO / "enrollment" / "devstack" / "devstack-x509.json").read_text())
    record["enrollmentGroupId"] = f"cmd-{tmp_path.name[-20:].strip('_-')}"
    (directory / f"{record['enrollmentGroupId']}.json").write_text(json.dumps(record))
    return directory


def _run(
    emulator: tuple[Child, DevstackTls],
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    child, tls = emulator
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DPS_", "ALLOCATION_", "ENROLLMENT_"))
    }
    environ |= {
        "DPS_CONNECTION_STRING": child.info["serviceConnectionString"],
        "DPS_CA_BUNDLE": str(tls.ca_cert),
        "ALLOCATION_WEBHOOK_URL": WEBHOOK,
        "ALLOCATION_FUNCTION_KEY": FUNCTION_KEY,
        "ENROLLMENT_LOCAL_CA_DIR": str(tmp_path / "local-ca"),
        "COLUMNS": "200",
    } | (env or {})
    done = subprocess.run(
        [sys.executable, "-m", "operator_cli", "enrollment", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert FUNCTION_KEY not in done.stdout + done.stderr
    return done


def test_plan_apply_and_list_create_update_and_keep_groups(emulator, tmp_path, groups_dir):
    child, _ = emulator
    group_id = next(p.stem for p in groups_dir.glob("cmd-*.json"))
    dirs = ["--groups-dir", str(groups_dir)]

    planned = _run(emulator, tmp_path, "plan", *dirs)
    assert planned.returncode == 0, planned.stderr
    assert "create" in planned.stdout
    assert f"{WEBHOOK}?****" in planned.stdout
    assert _group(child, group_id) is None

    applied = _run(emulator, tmp_path, "apply", "--json", *dirs)
    assert applied.returncode == 0, applied.stderr
    actions = {e["enrollmentGroupId"]: e["action"] for e in json.loads(applied.stdout)}
    assert actions[group_id] == "create"
    created = _group(child, group_id)
    assert created is not None
    webhook = created["customAllocationDefinition"]["webhookUrl"]
    assert webhook == f"{WEBHOOK}?code={FUNCTION_KEY}"

    again = _run(emulator, tmp_path, "apply", "--json", *dirs)
    assert again.returncode == 0, again.stderr
    assert {e["action"] for e in json.loads(again.stdout)} == {"unchanged"}
    assert _stored(child, group_id)["etag"] == created["etag"]

    rekeyed = _run(
        emulator, tmp_path, "plan", *dirs, env={"ALLOCATION_FUNCTION_KEY": FUNCTION_KEY + "2"}
    )
    assert "(function key changed)" in rekeyed.stdout
    assert FUNCTION_KEY + "2" not in rekeyed.stdout + rekeyed.stderr

    moved = {"ALLOCATION_WEBHOOK_URL": "https://func2.example.test/api/allocate"}
    planned = _run(emulator, tmp_path, "plan", *dirs, env=moved)
    assert "update" in planned.stdout
    assert "https://func.example.test/api/allocate?**** ->" in planned.stdout
    updated = _run(emulator, tmp_path, "apply", *dirs, env=moved)
    assert updated.returncode == 0, updated.stderr
    assert "updated" in updated.stdout
    after = _stored(child, group_id)
    assert after["etag"] != created["etag"]
    assert after["customAllocationDefinition"]["webhookUrl"].startswith("https://func2.")

    listed = _run(emulator, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = {group["enrollmentGroupId"]: group for group in json.loads(listed.stdout)}
    shown = listing[group_id]["customAllocationDefinition"]["webhookUrl"]
    assert shown == "https://func2.example.test/api/allocate?****"
    table = _run(emulator, tmp_path, "list")
    assert group_id in table.stdout


def test_the_key_can_come_from_a_file_and_never_shows(emulator, tmp_path, groups_dir):
    key_file = tmp_path / "function.key"
    key_file.write_text(FUNCTION_KEY + "\n")
    done = _run(
        emulator,
        tmp_path,
        "plan",
        "--groups-dir",
        str(groups_dir),
        env={"ALLOCATION_FUNCTION_KEY": "", "ALLOCATION_FUNCTION_KEY_FILE": str(key_file)},
    )
    assert done.returncode == 0, done.stderr
    assert "?****" in done.stdout


def test_a_key_inside_the_webhook_url_is_refused(emulator, tmp_path, groups_dir):
    done = _run(
        emulator,
        tmp_path,
        "plan",
        "--groups-dir",
        str(groups_dir),
        env={"ALLOCATION_WEBHOOK_URL": f"{WEBHOOK}?code={FUNCTION_KEY}"},
    )
    assert done.returncode == 2
    assert "must not carry the function key" in done.stderr


def test_a_wrong_key_is_a_clear_401(emulator, tmp_path, groups_dir):
    child, _ = emulator
    parsed = parse_connection_string(child.info["serviceConnectionString"], "t")
    wrong = (
        f"HostName={parsed.host_name};SharedAccessKeyName={parsed.policy};"
        "SharedAccessKey=d3JvbmcgcG9saWN5IGtleSwgMzIgYnl0ZXMgbG9uZyE="
    )
    done = _run(
        emulator,
        tmp_path,
        "plan",
        "--groups-dir",
        str(groups_dir),
        env={"DPS_CONNECTION_STRING": wrong},
    )
    assert done.returncode == 1
    assert "refused the credentials" in done.stderr
    assert "HTTP 401" in done.stderr
    assert "d3Jvbmcg" not in done.stderr


def test_a_malformed_group_file_names_the_file_and_the_field(emulator, tmp_path, groups_dir):
    bad = groups_dir / "broken.json"
    bad.write_text(
        json.dumps(
            {
                "enrollmentGroupId": "broken",
                "attestation": {"type": "x509", "x509": {"signingCertificates": {}}},
                "allocationPolicy": "custom",
                "customAllocationDefinition": {"apiVersion": "2021-10-01"},
            }
        )
    )
    done = _run(emulator, tmp_path, "plan", "--groups-dir", str(groups_dir))
    assert done.returncode == 2
    assert "broken.json" in done.stderr
    assert "attestation.x509.signingCertificates.primary" in done.stderr


def test_no_dps_configured_is_explained(emulator, tmp_path, groups_dir):
    done = _run(emulator, tmp_path, "list", env={"DPS_CONNECTION_STRING": ""})
    assert done.returncode == 2
    assert "DPS_CONNECTION_STRING" in done.stderr
    assert "DPS_SERVICE_HOST" in done.stderr


async def test_an_update_that_lost_the_race_is_a_412_naming_the_group(emulator, tmp_path):
    child, tls = emulator
    connection = parse_connection_string(child.info["serviceConnectionString"], "t")
    record: dict[str, Any] = {
        "enrollmentGroupId": "race-1",
        "attestation": {
            "type": "x509",
            "x509": {
                "signingCertificates": {
                    "primary": {"certificate": TestCertificateAuthority(name="Race CA").issued.pem}
                }
            },
        },
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": WEBHOOK, "apiVersion": "2021-10-01"},
    }
    async with _service(connection, tls) as dps:
        first = await dps.put_group(record, None)
        await dps.put_group(record | {"provisioningStatus": "disabled"}, first["etag"])
        with pytest.raises(DpsServiceError) as raised:
            await dps.put_group(record, first["etag"])
    assert raised.value.status == 412
    assert "race-1" in str(raised.value)
    assert "etag" in str(raised.value)


def _service(connection: DpsConnectionString, tls: DevstackTls) -> DpsService:
    return DpsService(connection.host_name, SasAuth(connection), ca_bundle=str(tls.ca_cert))


def _stored(child: Child, group_id: str) -> dict[str, Any]:
    found = _group(child, group_id)
    assert found is not None
    return found


def _group(child: Child, group_id: str) -> dict[str, Any] | None:
    """The group as the emulator stores it (the webhook URL in full, the key included)."""
    path = Path(child.info["enrollmentGroupsDir"]) / f"{group_id}.json"
    return json.loads(path.read_text()) if path.exists() else None
