"""`make run`'s supervisor and the device simulator, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.dps_requests import allocation_request
from devstack.processes import start_child, stop_children, wait_ready
from devstack.stack import free_port
from tests.integration.conftest import REPO, RunningStack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose once it no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _up(data_dir: Path, *options: str, function_port: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "up",
            "--data-dir",
            str(data_dir),
            "--function-port",
            str(function_port),
            "--asset-port",
            "0",
            "--dps-port",
            "0",
            "--blob-port",
            "0",
            "--queue-port",
            "0",
            "--table-port",
            "0",
            "--hub-port",
            "hub-us-east.azure-devices.net=0",
            "--hub-port",
            "hub-eu-west.azure-devices.net=0",
            "--identity-port",
            "0",
            "--dps-retry-scale",
            "0.01",
            *options,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_stack_serves_then_ctrl_c_stops_every_process(tmp_path):
    data_dir = tmp_path / "devstack"
    supervisor = _up(data_dir)
    stack_file = data_dir / "stack.json"
    try:
        deadline = time.monotonic() + 30
        while not stack_file.exists():
            assert supervisor.poll() is None, supervisor.stdout.read() if supervisor.stdout else ""
            assert time.monotonic() < deadline, "stack.json never appeared"
            time.sleep(0.1)
        stack = json.loads(stack_file.read_text())
        assert stack["functionHost"].startswith("http://127.0.0.1:")
        assert stack["assetApi"].startswith("http://127.0.0.1:")

        status = httpx.get(f"{stack['functionHost']}/admin/host/status", timeout=5)
        assert status.json()["state"] == "Running"
        body = allocation_request(
            "sensor-2001", x509={"subjectName": "CN=sensor-2001, SERIALNUMBER=SN-2001"}
        )
        answer = httpx.post(stack["allocateUrl"], json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["iotHubHostName"] == "hub-eu-west.azure-devices.net"
        linked = httpx.get(
            f"{stack['assetApi']}/assets/AST-2001",
            headers={"x-api-key": stack["assetApiKey"]},
            timeout=5,
        ).json()
        assert linked["deviceId"] == "sensor-2001"
        assert set(stack["hubs"]) == {
            "hub-us-east.azure-devices.net",
            "hub-eu-west.azure-devices.net",
        }
        assert Path(stack["tls"]["caCert"]).is_file()
        assert stack["dps"]["idScope"]
        [group] = stack["enrollmentGroups"]
        assert Path(group["caCert"]).is_file()
        assert Path(group["caKey"]).is_file()

        # The whole journey through the stack as started: devices register with DPS over mTLS.
        simulated = subprocess.run(
            [sys.executable, "-m", "devstack.simulate", "--devices", "6", "--json"]
            + ["--stack", str(stack_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert simulated.returncode == 0, simulated.stderr[-2000:]
        summary = json.loads(simulated.stdout)
        assert summary["via"] == "dps"
        assert summary["statuses"] == {"assigned": 6}
        assert summary["roles"] == {"sensor": 2, "actuator": 2, "gateway": 2}

        second = _up(data_dir)
        output, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        assert "already running" in output
        assert stack_file.exists(), "a refused second start must not remove the first's file"

        supervisor.send_signal(signal.SIGINT)
        output, _ = supervisor.communicate(timeout=30)
        assert supervisor.returncode == 0, output
        assert "all devstack processes stopped" in output
        for pid in stack["pids"].values():
            assert not _alive(pid), f"process {pid} outlived the stack"
        assert not stack_file.exists()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_the_simulator_onboards_a_fleet_and_reports_it(stack: RunningStack):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.simulate",
            "--devices",
            "12",
            "--json",
            "--via",
            "webhook",
            "--stack",
            str(stack.stack_json()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["statuses"] == {"200": 12}
    assert summary["roles"] == {"sensor": 4, "actuator": 4, "gateway": 4}
    assert summary["hubs"] == {
        "hub-us-east.azure-devices.net": 6,
        "hub-eu-west.azure-devices.net": 6,
    }
    assert 0 < summary["latencyMs"]["p50"] <= summary["latencyMs"]["p99"]
    assert "allocating through the webhook" in result.stderr  # the progress bar
    with stack.asset_client() as client:
        items = client.get("/assets", params={"location": "us-east/plant-9"}).json()["items"]
    simulated = [a for a in items if a["attributes"].get("source") == "devstack.simulate"]
    assert len(simulated) >= 6
    assert all(a["deviceId"] and a["deviceId"].startswith("sim-") for a in simulated)


def test_the_simulator_exits_nonzero_when_devices_fail(stack: RunningStack, tmp_path):
    broken = json.loads(stack.stack_json().read_text())
    broken["functionKey"] = "wrong-key"
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.simulate",
            "--devices",
            "3",
            "--json",
            "--via",
            "webhook",
            "--stack",
            str(path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["statuses"] == {"401": 3}


def test_the_simulator_explains_a_missing_stack(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "devstack.simulate", "--stack", str(tmp_path / "none.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "make run" in result.stderr


def _wait_for(stack_file: Path, supervisor: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while not stack_file.exists():
        assert supervisor.poll() is None, supervisor.stdout.read() if supervisor.stdout else ""
        assert time.monotonic() < deadline, "stack.json never appeared"
        time.sleep(0.1)
    description: dict[str, Any] = json.loads(stack_file.read_text())
    return description


def test_core_tools_mode_leaves_the_host_to_func_and_writes_the_settings_it_reads(tmp_path):
    data_dir = tmp_path / "devstack"
    port = free_port()
    supervisor = _up(data_dir, "--core-tools", function_port=port)
    host = None
    try:
        stack = _wait_for(data_dir / "stack.json", supervisor)
        assert "function-host" not in stack["pids"]
        assert stack["allocateUrl"] == f"http://127.0.0.1:{port}/api/allocate"
        settings_file = Path(stack["coreToolsSettings"])
        assert settings_file.stat().st_mode & 0o777 == 0o600, "it holds the stack's keys"
        document = json.loads(settings_file.read_text())
        assert document["IsEncrypted"] is False
        assert document["Host"] == {"LocalHttpPort": port}
        values = document["Values"]
        assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
        for endpoint in ("BlobEndpoint=", "QueueEndpoint=", "TableEndpoint="):
            assert endpoint in values["AzureWebJobsStorage"], "Core Tools' host needs all three"
        assert set(json.loads(values["IOT_HUB_CONNECTION_STRINGS"])) == set(stack["hubs"])
        assert values["ASSET_API_URL"] == stack["assetApi"]

        # What `func start` would do with it: a host that reads only this file, on its port.
        host = wait_ready(
            start_child(
                "stand-in-for-func",
                "devstack.function_host",
                ["--script-root", str(REPO), "--settings-file", str(settings_file)],
                run_dir=tmp_path,
                cwd=REPO,
            )
        )
        assert host.url == f"http://127.0.0.1:{port}"
        simulated = subprocess.run(
            [sys.executable, "-m", "devstack.simulate", "--devices", "3", "--json"]
            + ["--stack", str(data_dir / "stack.json")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert simulated.returncode == 0, simulated.stderr[-2000:]
        assert json.loads(simulated.stdout)["statuses"] == {"assigned": 3}
    finally:
        if host is not None:
            stop_children([host])
        supervisor.send_signal(signal.SIGINT)
        output, _ = supervisor.communicate(timeout=30)
    assert "local.settings.json && func start" in " ".join(output.split())


def test_keyless_and_core_tools_together_are_refused_with_the_reason(tmp_path):
    refused = _up(tmp_path / "devstack", "--keyless", "--core-tools")
    output, _ = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert "--keyless runs with the dev functions host only" in output
