import pytest

from bootstrap import hub_connections
from iothub_client import HubConnections, parse_connection_string
from settings import ConfigurationError, load_settings

KEY = "c2VjcmV0LWtleS1ub3QtdG8tYmUtbG9nZ2Vk"
EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


def conn(host: str) -> str:
    return f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"


def test_a_connection_string_splits_into_its_parts():
    parts = parse_connection_string(conn("127.0.0.1:8443"), EAST)
    assert parts == {
        "HostName": "127.0.0.1:8443",
        "SharedAccessKeyName": "iothubowner",
        "SharedAccessKey": KEY,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HostName=h;SharedAccessKeyName=p", "lacks SharedAccessKey"),
        ("garbage", "malformed part number 1"),
        (f"HostName=;SharedAccessKeyName=p;SharedAccessKey={KEY}", "malformed part 'HostName'"),
        (f"HostName=h;SharedAccessKeyName=p;{KEY}", "malformed part number 3"),
        (f"HostName=h;SharedAccessKeyName=p;{KEY}=", "malformed part number 3"),
        (f"HostName=h;{KEY[:20]}=  ;SharedAccessKey={KEY}", "malformed part number 2"),
        ("HostName=h;SharedAccessKeyName=p;SharedAccessKey=", "malformed part 'SharedAccessKey'"),
    ],
)
def test_a_bad_connection_string_is_named_without_its_key(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_connection_string(text, EAST)
    assert KEY[:20] not in str(caught.value)
    assert EAST in str(caught.value)


def test_hubs_are_looked_up_case_insensitively_and_keys_never_print():
    connections = HubConnections.from_connection_strings({EAST: conn("127.0.0.1:8443")})
    assert connections[EAST.upper()].endpoint == "127.0.0.1:8443"
    assert KEY not in repr(connections[EAST])


def test_managed_identity_hubs_reach_their_own_name_unless_overridden():
    connections = HubConnections.managed_identity([EAST, WEST], {WEST: "127.0.0.1:8444"})
    assert connections[EAST].endpoint == EAST
    assert connections[WEST].endpoint == "127.0.0.1:8444"
    assert connections[EAST].auth == "managedIdentity"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("ASSET_API_URL", "http://127.0.0.1:7080")
    monkeypatch.setenv("POLICY_FILE", "policies/demo.toml")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    for name in ("IOT_HUB_CONNECTION_STRINGS", "IOT_HUB_MANAGED_IDENTITY_HUBS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_combine_sas_and_managed_identity_hubs(env):
    env.setenv("IOT_HUB_CONNECTION_STRINGS", f'{{"{EAST}": "{conn("127.0.0.1:8443")}"}}')
    env.setenv("IOT_HUB_MANAGED_IDENTITY_HUBS", f" {WEST} , ")
    connections = hub_connections(load_settings())
    assert {c.hub: c.auth for c in connections.values()} == {
        EAST: "connectionString",
        WEST: "managedIdentity",
    }


@pytest.mark.parametrize(
    ("strings", "identity_hubs", "message"),
    [
        ("not json", None, "must be a JSON object"),
        ('["a"]', None, "must be a JSON object"),
        (f'{{"{EAST}": "HostName=x;SharedAccessKey={KEY}"}}', None, "lacks SharedAccessKeyName"),
        (f'{{"{EAST}": "{conn("h")}"}}', EAST, "both name"),
    ],
)
def test_bad_hub_settings_fail_naming_the_setting_not_the_key(env, strings, identity_hubs, message):
    env.setenv("IOT_HUB_CONNECTION_STRINGS", strings)
    if identity_hubs:
        env.setenv("IOT_HUB_MANAGED_IDENTITY_HUBS", identity_hubs)
    with pytest.raises(ConfigurationError, match=message) as caught:
        hub_connections(load_settings())
    assert "IOT_HUB_" in str(caught.value)
    assert KEY not in str(caught.value)
