"""The operator CLI's audit command, run as a subprocess against a real Azurite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit import AuditEntry
from devstack.azurite import ACCOUNT_KEY, AzuriteChild
from tests.integration.audit_tables import AuditTableSides
from tests.integration.azurite_fixtures import azurite, unique_name

__all__ = ["azurite"]

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, 5, 13, 32, 123456, tzinfo=UTC)
_CLEARED_ENV = ("AzureWebJobsStorage", "AUDIT_TABLE")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class AuditTable:
    connection_string: str
    name: str

    def add(self, *entries: AuditEntry) -> None:
        async def append() -> None:
            async with AuditTableSides(self.connection_string, self.name) as store:
                for item in entries:
                    await store.writer.append(item)

        asyncio.run(append())


@pytest.fixture
def table(azurite: AzuriteChild) -> AuditTable:
    return AuditTable(azurite.connection_string, unique_name("audit"))


def run_cli(
    args: Sequence[str],
    *,
    table: AuditTable | None,
    cwd: Path,
    env: dict[str, str] | None = None,
    columns: int = 250,
) -> Result:
    """`python -m operator_cli audit ARGS` with a clean environment."""
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    full_env.update({"PYTHONPATH": str(REPO_ROOT), "COLUMNS": str(columns), "NO_COLOR": "1"})
    if table is not None:
        full_env["AzureWebJobsStorage"] = table.connection_string
        full_env["AUDIT_TABLE"] = table.name
    full_env.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "operator_cli", "audit", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    assert ACCOUNT_KEY not in result.out + result.err
    assert "AccountKey=" not in result.out + result.err
    assert "Traceback" not in result.err, result.err
    return result


def entry(n: int, **fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "entryId": f"e{n}-{unique_name('')}",
        "at": T0 + timedelta(minutes=n),
        "action": "allocation.decided",
        "actor": "dps-webhook",
        "outcome": "assigned",
        "registrationId": "dev-1",
        "deviceId": "dev-1",
        "assetId": "PUMP-7",
        "hub": "hub-west.azure-devices.net",
        "requestId": f"req-{n}",
        "details": {
            "serial": "SN-1",
            "role": "actuator",
            "hubSelection": "location west -> hub-west",
            "roleReason": "assetType pump",
        },
    }
    values.update(fields)
    return AuditEntry.model_validate(values)


def history() -> list[AuditEntry]:
    """A pump's life: allocated (fallback, then reconciled), synced, its device replaced."""
    return [
        entry(
            0,
            action="allocation.fallback",
            outcome="fallback",
            details={"role": "default", "reason": "asset system unavailable"},
        ),
        entry(1, action="reconciliation.completed", actor="reconciler", outcome="reconciled"),
        entry(2, action="sync.twinWritten", actor="asset-sync", outcome="written", details={}),
        entry(
            3,
            action="replacement.accepted",
            deviceId="dev-2",
            registrationId="reg-dev-2",
            outcome="replaced",
            details={"replacementFor": "dev-1", "reason": "broken display"},
        ),
        entry(4, action="device.deregistered", outcome="disabled", requestId="req-4"),
    ]


def body_lines(out: str, marker: str = "2026-11-26") -> list[str]:
    return [line for line in out.splitlines() if line.lstrip().startswith(marker)]


def test_a_device_timeline_is_a_table_oldest_first_with_the_key_details(
    table: AuditTable, tmp_path: Path
) -> None:
    events = history()
    table.add(*reversed(events))

    result = run_cli(["device", "dev-1"], table=table, cwd=tmp_path)

    assert result.code == 0, result.err
    assert f"audit trail of device dev-1 (table {table.name})" in result.out
    header = next(line for line in result.out.splitlines() if "action" in line)
    for column in ("time", "actor", "outcome", "device", "asset", "hub", "details", "request"):
        assert column in header
    lines = body_lines(result.out)
    actions = [
        "allocation.fallback",
        "reconciliation.completed",
        "sync.twinWritten",
        "device.deregistered",
    ]
    assert [next(a for a in actions if a in line) for line in lines] == actions
    assert lines[0].lstrip().startswith("2026-11-26 05:13:32.123Z")
    assert "replacement.accepted" not in result.out  # that entry is dev-2's
    out = result.out
    assert "role=default" in out
    assert "reason=asset system unavailable" in out
    # Key details first (role, roleReason, hubSelection), then the others.
    reconciled = out[out.index("reconciliation.completed") :]
    assert reconciled.index("role=actuator") < reconciled.index("roleReason=assetType pump")
    assert reconciled.index("roleReason=") < reconciled.index("hubSelection=location west")
    assert reconciled.index("hubSelection=") < reconciled.index("serial=SN-1")
    for value in ("dps-webhook", "hub-west.azure-devices.net", "PUMP-7", "req-4", "disabled"):
        assert value in out
    assert "4 entries, oldest first" in out


def test_an_asset_timeline_spans_its_devices(table: AuditTable, tmp_path: Path) -> None:
    table.add(*history())
    result = run_cli(["asset", "PUMP-7"], table=table, cwd=tmp_path)
    assert result.code == 0, result.err
    assert len(body_lines(result.out)) == 5
    replaced = next(line for line in body_lines(result.out) if "replacement.accepted" in line)
    assert "dev-2" in replaced
    assert "replacementFor=dev-1" in result.out


def test_a_registration_timeline(table: AuditTable, tmp_path: Path) -> None:
    table.add(*history())
    result = run_cli(["registration", "reg-dev-2"], table=table, cwd=tmp_path)
    assert result.code == 0, result.err
    [line] = body_lines(result.out)
    assert "replacement.accepted" in line


def test_json_carries_every_entry_oldest_first(table: AuditTable, tmp_path: Path) -> None:
    events = history()
    table.add(*events)
    result = run_cli(["asset", "PUMP-7", "--json"], table=table, cwd=tmp_path)
    assert result.code == 0, result.err
    document = result.json()
    assert document == {
        "table": table.name,
        "subject": "asset",
        "id": "PUMP-7",
        "count": 5,
        "maybeMore": False,
        "unreadable": 0,
        "items": [item.to_message() for item in events],
    }


def test_limit_shows_the_latest_and_says_older_ones_exist(
    table: AuditTable, tmp_path: Path
) -> None:
    events = history()
    table.add(*events)
    shown = run_cli(["asset", "PUMP-7", "--limit", "2"], table=table, cwd=tmp_path)
    assert shown.code == 0, shown.err
    lines = body_lines(shown.out)
    assert len(lines) == 2
    assert "replacement.accepted" in lines[0]
    assert "device.deregistered" in lines[1]
    assert "older ones exist (raise --limit)" in shown.out
    as_json = run_cli(["asset", "PUMP-7", "--limit", "2", "--json"], table=table, cwd=tmp_path)
    assert [item["entryId"] for item in as_json.json()["items"]] == [
        events[3].entry_id,
        events[4].entry_id,
    ]
    assert as_json.json()["maybeMore"] is True


def test_a_narrow_terminal_stacks_the_fields(table: AuditTable, tmp_path: Path) -> None:
    table.add(*history())
    result = run_cli(["device", "dev-1"], table=table, cwd=tmp_path, columns=100)
    assert result.code == 0, result.err
    assert all(len(line) <= 100 for line in result.out.splitlines())
    assert "role=default" in result.out
    assert "hub-west.azure-devices.net" in result.out
    assert len(body_lines(result.out)) == 4


def test_no_entries_is_said_plainly_and_is_not_an_error(table: AuditTable, tmp_path: Path) -> None:
    missing_table = run_cli(["device", "nobody"], table=table, cwd=tmp_path)
    assert missing_table.code == 0, missing_table.err
    assert f"no audit entries for device nobody in table {table.name}" in missing_table.out
    table.add(entry(1))
    result = run_cli(["asset", "NOTHING-9"], table=table, cwd=tmp_path)
    assert result.code == 0
    assert f"no audit entries for asset NOTHING-9 in table {table.name}" in result.out
    as_json = run_cli(["registration", "nobody", "--json"], table=table, cwd=tmp_path)
    assert as_json.code == 0
    assert as_json.json()["count"] == 0
    assert as_json.json()["items"] == []


def test_many_details_are_capped_and_empty_ones_left_out(table: AuditTable, tmp_path: Path) -> None:
    details: dict[str, Any] = {f"extra{n}": n for n in range(10)}
    details.update({"outage": None, "hubReason": "rule 'west/*'", "role": "sensor"})
    table.add(entry(1, details=details))
    result = run_cli(["device", "dev-1"], table=table, cwd=tmp_path)
    assert result.code == 0, result.err
    out = result.out
    assert out.index("role=sensor") < out.index("hubReason=rule 'west/*'") < out.index("extra0=0")
    assert "outage" not in out
    assert "extra5=5" in out
    assert "extra6" not in out
    assert "+4 more (see --json)" in out


def test_terminal_control_characters_in_entries_are_shown_escaped(
    table: AuditTable, tmp_path: Path
) -> None:
    table.add(entry(1, outcome="\x1b[2Jwiped", details={"reason": "bell\x07"}))
    result = run_cli(["device", "dev-1"], table=table, cwd=tmp_path)
    assert result.code == 0, result.err
    assert "\x1b" not in result.out
    assert "\x07" not in result.out
    assert "\\x1b[2Jwiped" in result.out
    assert "reason=bell\\x07" in result.out


def test_missing_connection_names_the_three_sources(tmp_path: Path) -> None:
    result = run_cli(["device", "dev-1"], table=None, cwd=tmp_path)
    assert result.code == 2
    for source in ("--connection-string", "AzureWebJobsStorage", ".devstack/stack.json"):
        assert source in result.err.replace("\n", "")


def test_connection_from_the_flag_and_from_the_local_stack_file(
    table: AuditTable, tmp_path: Path
) -> None:
    table.add(entry(1))
    by_flag = run_cli(
        ["device", "dev-1", "--json", "--connection-string", table.connection_string],
        table=None,
        cwd=tmp_path,
        env={"AUDIT_TABLE": table.name},
    )
    assert by_flag.code == 0, by_flag.err
    assert by_flag.json()["count"] == 1
    stack = tmp_path / ".devstack"
    stack.mkdir()
    (stack / "stack.json").write_text(
        json.dumps({"storage": {"connectionString": table.connection_string}})
    )
    by_stack = run_cli(
        ["device", "dev-1", "--json", "--table", table.name], table=None, cwd=tmp_path
    )
    assert by_stack.code == 0, by_stack.err
    assert by_stack.json()["count"] == 1


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["device", "d", "--table", "no-dashes"], {}, "not a table name"),
        (["device", "d"], {"AUDIT_TABLE": "1abc"}, "AUDIT_TABLE"),
        (["device", "d", "--connection-string", "nonsense"], {}, "not valid"),
    ],
)
def test_bad_configuration_is_exit_2(
    table: AuditTable, tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli(args, table=table, cwd=tmp_path, env=env)
    assert result.code == 2
    assert named in result.err.replace("\n", " ")


@pytest.mark.parametrize(
    "args", [["device"], ["device", "d", "--limit", "0"], ["device", "d", "--limit", "1001"], []]
)
def test_bad_usage_is_exit_2(table: AuditTable, tmp_path: Path, args: list[str]) -> None:
    assert run_cli(args, table=table, cwd=tmp_path).code == 2


def test_unreachable_storage_is_a_clear_error(tmp_path: Path) -> None:
    unreachable = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:9/devstoreaccount1"
    )
    result = run_cli(
        ["device", "dev-1"], table=None, cwd=tmp_path, env={"AzureWebJobsStorage": unreachable}
    )
    assert result.code == 1
    message = result.err.replace("\n", " ")
    assert "table audit" in message
    assert "is the storage account from AzureWebJobsStorage up?" in message


def test_dead_letters_still_work_beside_audit(azurite: AzuriteChild, tmp_path: Path) -> None:
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    full_env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "AzureWebJobsStorage": azurite.connection_string,
            "DEAD_LETTER_QUEUE": unique_name("dl"),
        }
    )
    completed = subprocess.run(
        [sys.executable, "-m", "operator_cli", "dead-letters", "list", "--json"],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["count"] == 0
