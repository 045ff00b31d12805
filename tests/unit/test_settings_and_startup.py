"""Settings are read once and the app refuses to start, naming the setting, when one is wrong."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from settings import ConfigurationError, load_settings

REPO = Path(__file__).resolve().parents[2]
GOOD = {
    "ASSET_API_URL": "http://127.0.0.1:7080",
    "ASSET_API_KEY": "s3cr3t-key",
    "POLICY_FILE": "policies/demo.toml",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
SETTING_NAMES = [
    "ASSET_API_URL",
    "ASSET_API_KEY",
    "ASSET_API_TIMEOUT_SECONDS",
    "ASSET_API_MAX_CONNECTIONS",
    "ASSET_MANAGEMENT_PUBLIC_URL",
    "POLICY_FILE",
    "IOT_HUB_CONNECTION_STRINGS",
    "IOT_HUB_MANAGED_IDENTITY_HUBS",
    "IOT_HUB_MANAGED_IDENTITY_CLIENT_ID",
    "IOT_HUB_ENDPOINTS",
    "IOT_HUB_CA_BUNDLE",
    "IOT_HUB_TIMEOUT_SECONDS",
    "IOT_HUB_TWIN_UPDATES_PER_SECOND",
    "AzureWebJobsStorage",
    "RECONCILIATION_QUEUE",
    "QUEUE_MESSAGE_ENCODING",
    "DEAD_LETTER_QUEUE",
    "ASSET_API_MAX_ATTEMPTS",
    "ASSET_API_BREAKER_FAILURES",
    "ASSET_API_BREAKER_RESET_SECONDS",
    "IOT_HUB_BREAKER_FAILURES",
    "IOT_HUB_BREAKER_RESET_SECONDS",
    "AUDIT_QUEUE",
    "AUDIT_TABLE",
    "TWIN_EVENTS_HUB",
    "IOT_HUB_EVENTS_CONNECTION",
]


@pytest.fixture
def env(monkeypatch):
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_good_settings_load_with_defaults(env):
    settings = load_settings()
    assert settings.asset_api_timeout_seconds == 2.0
    assert settings.policy_path == REPO / "policies" / "demo.toml"
    assert settings.public_asset_url == "http://127.0.0.1:7080"
    assert "s3cr3t-key" not in repr(settings)


def test_an_empty_optional_setting_counts_as_unset(env):
    env.setenv("ASSET_MANAGEMENT_PUBLIC_URL", "")
    assert load_settings().asset_management_public_url is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ASSET_API_URL", None),
        ("ASSET_API_URL", "not a url"),
        ("ASSET_API_TIMEOUT_SECONDS", "0"),
        ("ASSET_API_TIMEOUT_SECONDS", "fast"),
        ("ASSET_API_MAX_CONNECTIONS", "0"),
        ("POLICY_FILE", None),
    ],
)
def test_a_bad_setting_is_named(env, name, value):
    if value is None:
        env.delenv(name)
    else:
        env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_the_sample_settings_file_lists_every_setting():
    import json

    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    assert set(SETTING_NAMES) <= set(values)
    readme = (REPO / "README.md").read_text()
    for name in SETTING_NAMES:
        assert f"`{name}`" in readme, f"README's configuration reference misses {name}"


def _start(env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update({k: v for k, v in {**GOOD, **env_overrides}.items() if v is not None})
    code = (
        "import function_app\n"
        "for f in function_app.app.get_functions():\n"
        "    t = f.get_trigger()\n"
        "    extra = (t.route, t.methods, t.auth_level) if hasattr(t, 'route') else ()\n"
        "    print(f.get_function_name(), t.get_binding_name(), *extra)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )


def test_the_app_indexes_the_webhook_and_both_sync_triggers():
    result = _start({})
    assert result.returncode == 0, result.stderr
    assert "allocate httpTrigger allocate" in result.stdout
    assert "asset_changed eventGridTrigger" in result.stdout
    assert "twin_changed eventHubTrigger" in result.stdout
    assert "POST" in result.stdout
    assert "FUNCTION" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ASSET_API_URL": None}, "ASSET_API_URL"),
        ({"POLICY_FILE": "policies/missing.toml"}, "POLICY_FILE"),
    ],
)
def test_the_app_fails_at_start_up_naming_the_setting(overrides, named):
    result = _start(overrides)
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert named in result.stderr
    assert "s3cr3t-key" not in result.stderr


def test_requirements_txt_matches_pyproject_runtime_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {Requirement(d).name: str(Requirement(d).specifier) for d in project["dependencies"]}
    listed = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            listed[requirement.name] = str(requirement.specifier)
    assert listed == declared
