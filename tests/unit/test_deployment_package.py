"""The deployment package holds the app and all it imports, starts unpacked, and nothing else."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from tests.deployment_package import (
    FUNCIGNORE,
    REPO,
    build_zip,
    core_tools_files,
    import_function_app,
    loaded_modules,
    packaged_files,
    zip_entries,
)

SETTINGS = {
    "ASSET_API_URL": "http://127.0.0.1:7080",
    "ASSET_API_KEY": "s3cr3t-key",
    "POLICY_FILE": "policies/demo.toml",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
RUNTIME_FILES = ["host.json", "requirements.txt", SETTINGS["POLICY_FILE"]]
MAX_PACKAGE_BYTES = 5 * 1024 * 1024
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

NEVER_AT_TOP = {".devstack", "devstack", "bench", "tests", "operator_cli", ".venv", ".git", ".ci"}
NEVER_ANYWHERE = {
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "local.settings.json",
    "local.settings.sample.json",
}
KEY_SUFFIXES = (".key.pem", ".key", ".pfx", ".p12")


@pytest.fixture(scope="module")
def app_modules() -> dict[str, str]:
    """Module name to repository-relative file, for every module of ours function_app imports."""
    loaded = loaded_modules(import_function_app(PYTHON, REPO, SETTINGS, isolated=False))
    ours = {
        name: path.relative_to(REPO).as_posix()
        for name, path in loaded.items()
        if path.is_relative_to(REPO)
    }
    assert ours.get("function_app") == "function_app.py", ours
    return ours


@pytest.fixture(scope="module")
def package_files() -> list[str]:
    return packaged_files(REPO, FUNCIGNORE)


@pytest.fixture(scope="module")
def package(package_files: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zip(REPO, package_files, tmp_path_factory.mktemp("package") / "app.zip")


def _unpack(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(into)
    return into


def _offences(name: str, content: bytes) -> list[str]:
    parts = name.split("/")
    found = []
    if b"PRIVATE KEY" in content or name.endswith(KEY_SUFFIXES):
        found.append("a private key")
    if parts[0] in NEVER_AT_TOP or parts[0].endswith(".egg-info"):
        found.append(f"{parts[0]}/")
    found += [part for part in parts if part in NEVER_ANYWHERE]
    if name.endswith((".pyc", ".pyo")):
        found.append("bytecode")
    return found


def test_the_package_holds_every_module_the_app_imports_and_its_runtime_files(
    app_modules, package_files, package
):
    missing = sorted(set(app_modules.values()) - set(package_files))
    assert not missing, f".funcignore leaves out modules function_app imports: {missing}"
    assert not [name for name in RUNTIME_FILES if name not in package_files]
    assert sorted(name for name, _ in zip_entries(package)) == package_files


def test_the_package_holds_no_key_test_tooling_local_state_or_cache(package):
    offenders = {
        name: found for name, content in zip_entries(package) if (found := _offences(name, content))
    }
    assert not offenders


def test_the_package_stays_small(package, package_files):
    size = package.stat().st_size
    print(f"deployment package: {len(package_files)} files, {size} bytes")
    assert size < MAX_PACKAGE_BYTES


def test_the_unpacked_package_imports_the_app_from_itself_alone(app_modules, package, tmp_path):
    app_dir = _unpack(package, tmp_path / "app")
    loaded = loaded_modules(import_function_app(PYTHON, app_dir, SETTINGS, isolated=True))
    ours = {name.partition(".")[0] for name in app_modules}
    elsewhere = {
        name: str(path)
        for name, path in loaded.items()
        if name.partition(".")[0] in ours and not path.is_relative_to(app_dir)
    }
    assert not elsewhere, f"imported from outside the package: {elsewhere}"
    assert set(app_modules) <= set(loaded)


def test_git_and_core_tools_take_the_same_files_from_the_working_tree(package_files):
    assert core_tools_files(REPO, FUNCIGNORE.read_text()) == package_files


SHIPPED = [
    ".python_packages/lib/site-packages/dependency/__init__.py",
    "allocation/__init__.py",
    "bootstrap.py",
    "function_app.py",
    "host.json",
    "new_package/__init__.py",
    "policies/cas/device-ca.pem",
    "policies/demo.toml",
    "requirements.txt",
]
LEFT_OUT = [
    ".azure/dev/.env",
    ".ci/run",
    ".coverage",
    ".devstack/ca/root.key.pem",
    ".devstack/stack.json",
    ".env",
    ".hypothesis/examples/entry",
    ".mypy_cache/3.11/settings.data.json",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/CACHEDIR.TAG",
    ".venv/.gitignore",
    ".venv/pyvenv.cfg",
    ".vscode/settings.json",
    "Makefile",
    "README.md",
    "__pycache__/settings.cpython-311.pyc",
    "allocation/.DS_Store",
    "allocation/.service.py.swp",
    "allocation/__pycache__/service.cpython-311.pyc",
    "allocation/local.settings.json",
    "bench/.gitkeep",
    "bench/results/webhook.json",
    "build/lib/settings.py",
    "devstack/__init__.py",
    "docs/contracts.md",
    "dps_asset_onboarding.egg-info/PKG-INFO",
    "host.log",
    "local.settings.json",
    "local.settings.sample.json",
    "main_env/.gitignore",
    "main_env/pyvenv.cfg",
    "node_modules/.bin/azurite",
    "node_modules/.package-lock.json",
    "node_modules/@azure/core-rest-pipeline/package.json",
    "operator_cli/__main__.py",
    "package-lock.json",
    "package.json",
    "policies/cas/device-ca.key.pem",
    "pyproject.toml",
    "requirements.lock",
    "tests/unit/test_settings_and_startup.py",
]


def test_both_matchers_leave_out_keys_tooling_and_caches_and_keep_the_app(tmp_path):
    for relative in SHIPPED + LEFT_OUT:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        key = relative.endswith(".key.pem")
        path.write_text("-----BEGIN PRIVATE KEY-----\n" if key else f"{relative}\n")
    ignore_text = FUNCIGNORE.read_text()
    (tmp_path / ".funcignore").write_text(ignore_text)

    assert packaged_files(tmp_path, tmp_path / ".funcignore") == sorted(SHIPPED)
    assert core_tools_files(tmp_path, ignore_text) == sorted(SHIPPED)


def test_a_module_left_out_by_mistake_fails_both_checks(app_modules, tmp_path):
    packages = sorted({file.partition("/")[0] for file in app_modules.values() if "/" in file})
    dropped = packages[0]
    ignore_file = tmp_path / ".funcignore"
    ignore_file.write_text(f"{FUNCIGNORE.read_text()}\n/{dropped}\n")

    files = packaged_files(REPO, ignore_file)
    assert f"{dropped}/__init__.py" in set(app_modules.values()) - set(files)
    app_dir = _unpack(build_zip(REPO, files, tmp_path / "app.zip"), tmp_path / "app")
    result = import_function_app(PYTHON, app_dir, SETTINGS, isolated=True)
    assert result.returncode != 0
    assert f"No module named '{dropped}" in result.stderr
