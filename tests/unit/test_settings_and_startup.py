"""Settings are read once and the app refuses to start, naming the setting, when one is wrong."""

import subprocess
import sys
import tomllib
import traceback
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from settings import AppSettings, ConfigurationError, load_settings

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
    "AZURE_CLIENT_ID",
    "ASSET_API_AUDIENCE",
    "TWIN_EVENTS_CONSUMER_GROUP",
    "STORAGE_CA_BUNDLE",
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
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
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


KEY = "c2VjcmV0LWtleS1ub3QtdG8tYmUtbG9nZ2Vk"
HUB_CONNECTION = (
    f"HostName=hub-us-east.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
)
STORAGE_CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}"


def _everything_printed(error: BaseException) -> str:
    """What a crash would print: the message and every chained exception's traceback."""
    return "".join(traceback.format_exception(error))


def _shows_key(text: str) -> bool:
    """Any third of the key: pydantic shows a long input's head and tail, not all of it."""
    return any(KEY[i : i + 12] in text for i in range(0, len(KEY), 12))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # A connection string pasted into the wrong setting: pydantic quotes its input.
        ("ASSET_API_URL", HUB_CONNECTION),
        ("ASSET_MANAGEMENT_PUBLIC_URL", STORAGE_CONNECTION),
        ("QUEUE_MESSAGE_ENCODING", STORAGE_CONNECTION),
        ("RECONCILIATION_QUEUE", HUB_CONNECTION),
        ("IOT_HUB_TIMEOUT_SECONDS", HUB_CONNECTION),
        ("IOT_HUB_ENDPOINTS", f'["{HUB_CONNECTION}"]'),
        ("IOT_HUB_ENDPOINTS", f'{{"hub-us-east.azure-devices.net": {HUB_CONNECTION}}}'),
    ],
)
def test_a_bad_setting_holding_a_key_is_named_without_the_key(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name) as caught:
        load_settings()
    assert not _shows_key(_everything_printed(caught.value))
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_an_unparsable_json_setting_is_a_configuration_error_naming_it(env):
    env.setenv("IOT_HUB_ENDPOINTS", "{not json")
    with pytest.raises(ConfigurationError, match="IOT_HUB_ENDPOINTS: not valid JSON"):
        load_settings()


@pytest.mark.parametrize(
    "value",
    [
        HUB_CONNECTION,
        f'{{"hub-us-east.azure-devices.net": "{HUB_CONNECTION}"',
        f"{{'hub-us-east.azure-devices.net': '{HUB_CONNECTION}'}}",
        f'{{"hub-us-east.azure-devices.net": {HUB_CONNECTION}}}',
        f'["{HUB_CONNECTION}"]',
        f'{{"hub-us-east.azure-devices.net": ["{HUB_CONNECTION}"]}}',
        "[" * 100_000 + KEY,
        "1" * 5_000 + KEY,
    ],
)
def test_malformed_iot_hub_connection_strings_never_print_the_key(env, value):
    env.setenv("IOT_HUB_CONNECTION_STRINGS", value)
    settings = load_settings()
    with pytest.raises(ConfigurationError, match="IOT_HUB_CONNECTION_STRINGS must be") as caught:
        settings.iot_hub_connection_map()
    assert not _shows_key(_everything_printed(caught.value))
    assert caught.value.__context__ is None


def test_a_json_syntax_error_says_where_without_quoting(env):
    env.setenv("IOT_HUB_CONNECTION_STRINGS", f'{{"hub": "{HUB_CONNECTION}" "x"}}')
    with pytest.raises(ConfigurationError, match=r"Expecting ',' delimiter at line 1 column"):
        load_settings().iot_hub_connection_map()


@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    template=st.sampled_from(["{}", '{{"hub": "{}"}}', '{{"hub": {}}}', '["{}"]', "{{{}"]),
)
def test_no_iot_hub_connection_strings_error_carries_the_key(before, after, template):
    settings = AppSettings.model_validate(
        {**GOOD, "IOT_HUB_CONNECTION_STRINGS": before + template.format(HUB_CONNECTION) + after}
    )
    outcome = _connection_map_or_error(settings)
    if isinstance(outcome, ConfigurationError):
        assert not _shows_key(_everything_printed(outcome))
    else:
        assert all(isinstance(v, str) for v in outcome.values())


def _connection_map_or_error(settings: AppSettings) -> dict[str, str] | ConfigurationError:
    try:
        return settings.iot_hub_connection_map()
    except ConfigurationError as error:
        return error


def test_the_sample_settings_file_lists_every_setting():
    import json

    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    assert set(SETTING_NAMES) <= set(values)
    readme = (REPO / "docs" / "configuration.md").read_text()
    for name in SETTING_NAMES:
        assert f"`{name}`" in readme, f"docs/configuration.md misses {name}"


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
    [health] = [line for line in result.stdout.splitlines() if line.startswith("health ")]
    assert health.startswith("health httpTrigger health ")
    assert "GET" in health
    assert health.endswith(" FUNCTION")


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


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ASSET_API_URL": HUB_CONNECTION}, "ASSET_API_URL"),
        ({"IOT_HUB_ENDPOINTS": f"{{{HUB_CONNECTION}"}, "IOT_HUB_ENDPOINTS"),
        ({"IOT_HUB_CONNECTION_STRINGS": f'{{"hub": {HUB_CONNECTION}}}'}, "IOT_HUB_CONNECTION_STR"),
    ],
)
def test_a_start_up_failure_prints_no_key(overrides, named):
    result = _start(overrides)
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert named in result.stderr
    assert not _shows_key(result.stderr + result.stdout)


def _requirement_keys(lines: list[str]) -> list[tuple[str, str, str]]:
    """Name, range and environment marker of each requirement, in a form that ignores spelling
    (quote style, name case, spaces); one name may appear once per marker (azure-functions does)."""
    keys = []
    for line in lines:
        requirement = Requirement(line)
        keys.append(
            (
                canonicalize_name(requirement.name),
                str(requirement.specifier),
                str(requirement.marker or ""),
            )
        )
    return sorted(keys)


def test_requirements_txt_matches_pyproject_runtime_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = [
        line
        for line in (
            raw.split("#", 1)[0].strip()
            for raw in (REPO / "requirements.txt").read_text().splitlines()
        )
        if line
    ]
    assert _requirement_keys(listed) == _requirement_keys(project["dependencies"])


def test_requirement_keys_tell_markers_apart_and_ignore_spelling():
    assert _requirement_keys(["Azure_Functions>=2,<3; python_version >= '3.13'"]) == (
        _requirement_keys(['azure-functions <3, >=2 ; python_version>="3.13"'])
    )
    assert _requirement_keys(["azure-functions>=2,<3; python_version >= '3.13'"]) != (
        _requirement_keys(["azure-functions>=2,<3"])
    )
    both = ["a>=1; python_version < '3.13'", "a>=2; python_version >= '3.13'"]
    assert _requirement_keys(both) != _requirement_keys(both[:1])
