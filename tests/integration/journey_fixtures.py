"""Start the DPS emulator, the IoT Hub emulator and Microsoft's Node device client for tests.

Every part is a real child process on a free loopback port; one devstack CA (DevstackTls)
stands behind all HTTPS endpoints and is the CA the clients trust.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.azurite import AzuriteChild
from devstack.certificates import TestCertificateAuthority
from devstack.dps_emulator.enrollment_groups import (
    EnrollmentGroupFiles,
    ensure_default_enrollment_group,
)
from devstack.enrollment import DEVSTACK_GROUPS, apply_groups
from devstack.processes import Child, start_child, stop_children, wait_ready
from devstack.tls import DevstackTls, ensure_tls
from tests.integration.asset_service_fixtures import start_asset_service
from tests.integration.conftest import ASSET_KEY, FUNCTION_KEY, start_function_host
from tests.integration.policy_files import policy_file

REPO = Path(__file__).resolve().parents[2]
NODE_HARNESS = REPO / "devstack" / "node" / "register_device.js"
ID_SCOPE = "0ne00TEST01"
EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


def start_dps_emulator(
    run_dir: Path,
    data_dir: Path,
    tls: DevstackTls,
    *,
    name: str = "dps-emulator",
    hubs_file: Path | None = None,
    extra_args: Sequence[str] = (),
    wait: bool = True,
) -> Child:
    """The DPS emulator on a free port with fast polling (Retry-After 0.05 s)."""
    args = [
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--id-scope",
        ID_SCOPE,
        "--tls-cert",
        str(tls.server_cert),
        "--tls-key",
        str(tls.server_key),
        "--ca-bundle",
        str(tls.ca_cert),
        "--poll-seconds",
        "0.05",
        *extra_args,  # later options win: extra_args may override the polling interval
    ]
    if hubs_file is not None:
        args += ["--hubs-file", str(hubs_file)]
    child = start_child(name, "devstack.dps_emulator", args, run_dir=run_dir, cwd=REPO)
    return wait_ready(child) if wait else child


def start_iothub_emulator(
    run_dir: Path, data_dir: Path, tls: DevstackTls, *, wait: bool = True
) -> Child:
    """Both demo hubs on free ports, throttling at IoT Hub S1's default limits."""
    child = start_child(
        "iothub-emulator",
        "devstack.iothub_emulator",
        [
            "--data-dir",
            str(data_dir),
            "--hub",
            f"{EAST}=0",
            "--hub",
            f"{WEST}=0",
            "--tls-cert",
            str(tls.server_cert),
            "--tls-key",
            str(tls.server_key),
        ],
        run_dir=run_dir,
        cwd=REPO,
    )
    return wait_ready(child) if wait else child


def write_hubs_file(path: Path, iothub: Child) -> Path:
    """The DPS emulator's hubs file, taken from the IoT Hub emulator's ready file."""
    hubs = {
        name: {"connectionString": hub["connectionString"], "url": hub["url"]}
        for name, hub in iothub.info["hubs"].items()
    }
    path.write_text(json.dumps(hubs, indent=2))
    return path


def registry_manager(iothub: Child, hub: str, tls: DevstackTls) -> Any:
    """The real azure-iot-hub SDK against one emulated hub."""
    from azure.iot.hub import IoTHubRegistryManager

    manager = IoTHubRegistryManager.from_connection_string(
        iothub.info["hubs"][hub]["connectionString"]
    )
    manager.protocol.config.connection.verify = str(tls.ca_cert)
    manager.protocol.config.retry_policy.retries = 0
    return manager


@dataclass(frozen=True)
class DeviceCredentials:
    registration_id: str
    cert: Path
    key: Path
    sha256_thumbprint: str


def issue_device(
    group: EnrollmentGroupFiles | TestCertificateAuthority,
    registration_id: str,
    directory: Path,
    *,
    serial_number: str | None = None,
) -> DeviceCredentials:
    """A leaf certificate from the group's CA, written as PEM files."""
    authority = (
        group
        if isinstance(group, TestCertificateAuthority)
        else TestCertificateAuthority.from_files(group.ca_cert, group.ca_key)
    )
    issued = authority.issue_device(registration_id, serial_number=serial_number)
    cert, key = issued.write(directory, registration_id)
    return DeviceCredentials(registration_id, cert, key, issued.sha256_thumbprint)


@dataclass(frozen=True)
class NodeRegistration:
    """What Microsoft's Node client reported: its exit code, stdout JSON, stderr."""

    returncode: int
    state: dict[str, Any] | None
    stderr: str


def register_with_node(
    dps: Child,
    device: DeviceCredentials,
    ca_file: Path,
    *,
    registration_id: str | None = None,
    payload: dict[str, Any] | None = None,
    timeout: float = 30,
) -> NodeRegistration:
    """Run devstack/node/register_device.js (needs `npm ci` at the repo root)."""
    if not (REPO / "node_modules" / "azure-iot-provisioning-device").is_dir():
        raise RuntimeError("Node packages missing: run `npm ci` at the repository root")
    command = [
        "node",
        str(NODE_HARNESS),
        "--host",
        "127.0.0.1",
        "--port",
        str(dps.info["port"]),
        "--id-scope",
        dps.info["idScope"],
        "--registration-id",
        registration_id or device.registration_id,
        "--cert",
        str(device.cert),
        "--key",
        str(device.key),
        "--ca",
        str(ca_file),
    ]
    if payload is not None:
        command += ["--payload", json.dumps(payload)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    state = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None
    return NodeRegistration(done.returncode, state, done.stderr)


@dataclass
class Journey:
    """The whole local stack: asset service, dev functions host, IoT Hub and DPS emulators."""

    assets: Child
    host: Child
    iothub: Child
    dps: Child
    tls: DevstackTls
    groups: dict[str, EnrollmentGroupFiles]
    run_dir: Path
    _managers: dict[str, Any] = field(default_factory=dict)

    def registry(self, hub: str) -> Any:
        if hub not in self._managers:
            self._managers[hub] = registry_manager(self.iothub, hub, self.tls)
        return self._managers[hub]

    def asset_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.assets.url, headers={"x-api-key": ASSET_KEY}, timeout=10)


JOURNEY_GROUPS = {
    # name: (group id, updateHubAssignment, migrateDeviceData)
    "default": ("devstack-x509", True, True),
    "migrate": ("journey-migrate", True, True),
    "reset": ("journey-reset", True, False),
    "never": ("journey-never", False, False),
}


@pytest.fixture(scope="module", name="journey")
def journey_stack(
    tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteChild
) -> Iterator[Journey]:
    """Module-wide stack; every part a child process on a free port, stopped at the end."""
    base = tmp_path_factory.mktemp("journey")
    run_dir = base / "run"
    tls = ensure_tls(base)
    children: list[Child] = []
    try:
        assets = start_asset_service(run_dir, base / "assets")
        children.append(assets)
        iothub = start_iothub_emulator(run_dir, base / "iothub", tls, wait=False)
        children.append(iothub)
        policy = policy_file(
            run_dir / "journey-policy.toml",
            groups=[group_id for group_id, _, _ in JOURNEY_GROUPS.values()],
        )
        host = start_function_host(
            run_dir, assets.url, storage=azurite.connection_string, POLICY_FILE=str(policy)
        )
        children.append(host)
        wait_ready(iothub)
        hubs_file = write_hubs_file(run_dir / "hubs.json", iothub)
        dps_dir = base / "dps"
        webhook_url = f"{host.url}/api/allocate?code={FUNCTION_KEY}"
        # The reprovisioning variants are files dropped into the emulator's data dir; the
        # default group goes in through `python -m operator_cli enrollment apply`.
        groups = {
            name: ensure_default_enrollment_group(
                dps_dir,
                webhook_url=webhook_url,
                hubs=[EAST, WEST],
                group_id=group_id,
                update_hub_assignment=update,
                migrate_device_data=migrate,
            )
            for name, (group_id, update, migrate) in JOURNEY_GROUPS.items()
            if name != "default"
        }
        dps = start_dps_emulator(
            run_dir,
            dps_dir,
            tls,
            hubs_file=hubs_file,
            extra_args=["--poll-seconds", "0.25", "--retry-scale", "0.01"],
        )
        children.append(dps)
        [applied] = apply_groups(
            dps.info,
            groups_dirs=[DEVSTACK_GROUPS],
            local_ca_dir=base / "enrollment-ca",
            webhook_url=f"{host.url}/api/allocate",
            function_key=FUNCTION_KEY,
            data_dir=dps_dir,
        )
        assert applied.group_id == JOURNEY_GROUPS["default"][0]
        groups["default"] = EnrollmentGroupFiles(
            applied.group_id, applied.record_path, applied.ca_cert, applied.ca_key
        )
        yield Journey(assets, host, iothub, dps, tls, groups, run_dir)
    finally:
        stop_children(list(reversed(children)))
