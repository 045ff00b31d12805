"""Importing a pure module loads no SDK, no aiohttp and no pybreaker.

Every module of the app's packages is held to it unless it is named below as an adapter, a
trigger (blueprint) or part of the operator CLI: a new module is pure until someone says
otherwise. Each import runs in a fresh interpreter, so nothing another test loaded counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP_PACKAGES = (
    "allocation",
    "asset_client",
    "audit",
    "device_twin",
    "health",
    "iothub_client",
    "messages",
    "observability",
    "policies",
    "reconciliation",
    "resilience",
    "roles",
    "storage_access",
    "sync",
)
HEAVY = ("azure", "aiohttp", "pybreaker", "msrest", "uamqp", "requests", "tenacity")
MAY_LOAD_SDKS = {
    # Triggers: azure.functions.
    "allocation.blueprint",
    "audit.blueprint",
    "health.blueprint",
    "reconciliation.blueprint",
    "sync.blueprint",
    # Adapters and the mechanics that wrap them.
    "asset_client.http_adapter",
    "audit.queue",
    "audit.table_access",
    "audit.table_writer",
    "audit.timeline",
    "audit.trail",
    "resilience.breaker",
    "resilience.durable_queue",
    "resilience.hub_breakers",
    "resilience.resilient_assets",
    "resilience.retry",
    "storage_access.auth_failures",
    "storage_access.clients",
    "storage_access.credentials",
}
PROBE = """
import importlib, json, os, sys, traceback
# Light and shared by most modules: loaded once, before each module is imported in a fork.
import pydantic, cryptography.x509
heavy = set(sys.argv[1].split(","))
found = {}
for name in sys.argv[2:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before} & heavy)
        os.write(write, json.dumps(loaded).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit(f"importing {name} failed")
    found[name] = json.loads(data)
print(json.dumps(found))
"""


def modules() -> list[str]:
    found = []
    for package in APP_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found.append(name.removesuffix(".__init__"))
    return found


def heavy_imports(names: list[str]) -> dict[str, list[str]]:
    """What of HEAVY each module loads, each imported in a fresh fork of one interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results: dict[str, list[str]] = json.loads(done.stdout)
    return results


def test_pure_modules_load_no_sdk_aiohttp_or_pybreaker():
    pure = [name for name in modules() if name not in MAY_LOAD_SDKS]
    assert "allocation.decision" in pure
    assert "sync.asset_to_twin" in pure
    loaded = {name: heavy for name, heavy in heavy_imports(pure).items() if heavy}
    assert loaded == {}, "pure modules that load SDKs: name them as adapters or fix them"


def test_the_list_of_adapters_names_real_modules_that_do_load_sdks():
    # A stale entry would exempt a module that no longer needs it.
    assert set(modules()) >= MAY_LOAD_SDKS
    loaded = heavy_imports(sorted(MAY_LOAD_SDKS))
    assert [name for name, heavy in loaded.items() if not heavy] == []


@pytest.mark.parametrize("name", ["allocation.decision", "sync.asset_to_twin", "policies"])
def test_the_probe_sees_a_heavy_import(name, tmp_path):
    # The probe itself can fail: a module that imports pybreaker is caught.
    module = tmp_path / "heavy_probe_target.py"
    module.write_text(f"import {name}\nimport pybreaker\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), "heavy_probe_target"],
        cwd=REPO,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"heavy_probe_target": ["pybreaker"]}
