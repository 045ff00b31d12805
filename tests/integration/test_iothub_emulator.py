"""The IoT Hub emulator as a real child process over real HTTPS, driven by the real SDK."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties
from azure.iot.hub.sastoken import SasToken
from msrest.exceptions import ClientRequestError, HttpOperationError

from devstack.identity.bad_tokens import BadTokens
from devstack.processes import stop_children
from tests.integration.identity_fixtures import (
    RunningIdentity,
    managed_identity_env,
    start_identity_service,
)
from tests.integration.iothub_fixtures import (
    HUB_EU,
    HUB_US,
    EventSink,
    RunningIotHubEmulator,
    event_body,
    hub_events,
    iothub_emulator,
    last_sequence_number,
    registry_manager,
    start_iothub_emulator,
)

__all__ = ["iothub_emulator"]  # re-exported fixture: pytest finds it in this module's namespace

THUMB_A = "A" * 40
THUMB_B = "B" * 64
# Every character IoT Hub allows in a device id besides letters and digits.
ODD_ID_CHARS = "-.%_*?!(),:=@$'"


@pytest.fixture(scope="module")
def rm(iothub_emulator: RunningIotHubEmulator) -> Any:
    return iothub_emulator.registry_manager()


@pytest.fixture(scope="module")
def http(iothub_emulator: RunningIotHubEmulator) -> Any:
    with iothub_emulator.http() as client:
        yield client


def new_id(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def status_of(call: Any) -> int:
    with pytest.raises(HttpOperationError) as caught:
        call()
    return int(caught.value.response.status_code)


def error_code(response: Any) -> str:
    message = response.json()["Message"]
    assert message.startswith("ErrorCode:")
    return str(message.removeprefix("ErrorCode:").split(";", 1)[0])


def twin_path(device_id: str) -> str:
    return f"/twins/{quote(device_id, safe='')}"


def raw_twin(http: httpx.Client, device_id: str) -> dict[str, Any]:
    response = http.get(twin_path(device_id), params={"api-version": "2021-04-12"})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["etag"]}"'
    twin: dict[str, Any] = response.json()
    return twin


def report(http: httpx.Client, device_id: str, patch: Any) -> httpx.Response:
    return http.patch(f"/devstack/twins/{quote(device_id, safe='')}/reported", json=patch)


def desired(twin: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = twin["properties"]["desired"]
    return section


# --- ready file -------------------------------------------------------------------------


def test_ready_file_names_each_hub_with_url_host_and_owner_connection_string(
    iothub_emulator: RunningIotHubEmulator,
):
    info = iothub_emulator.child.info
    assert set(info["hubs"]) == {HUB_US, HUB_EU}
    assert info["url"] == info["hubs"][HUB_US]["url"]
    assert Path(info["caCert"]).is_file()
    ports = set()
    for name, hub in info["hubs"].items():
        port = hub["port"]
        ports.add(port)
        assert hub["hubName"] == name.split(".")[0]
        assert hub["url"] == f"https://127.0.0.1:{port}"
        assert hub["hostName"] == f"127.0.0.1:{port}"
        prefix = f"HostName=127.0.0.1:{port};SharedAccessKeyName=iothubowner;SharedAccessKey="
        assert hub["connectionString"].startswith(prefix)
        key = hub["connectionString"].removeprefix(prefix)
        assert len(base64.b64decode(key, validate=True)) == 32
        assert set(hub["connectionStrings"]) >= {"iothubowner", "service"}
    assert len(ports) == 2
    parsed = iothub_emulator.hubs
    assert parsed[HUB_EU].connection_string == info["hubs"][HUB_EU]["connectionString"]


# --- devices ------------------------------------------------------------------------------


def test_devices_are_created_read_disabled_and_deleted_through_the_sdk(rm: Any):
    device_id = new_id()
    created = rm.create_device_with_certificate_authority(device_id, "enabled")
    assert created.device_id == device_id
    assert created.status == "enabled"
    assert created.connection_state == "Disconnected"
    assert created.authentication.type == "certificateAuthority"
    assert created.capabilities.iot_edge is False
    assert created.etag
    assert created.generation_id

    fetched = rm.get_device(device_id)
    assert (fetched.etag, fetched.generation_id) == (created.etag, created.generation_id)
    assert (
        status_of(lambda: rm.create_device_with_certificate_authority(device_id, "enabled")) == 409
    )

    disabled = rm.update_device_with_certificate_authority(
        device_id, fetched.etag, status="disabled"
    )
    assert disabled.status == "disabled"
    assert disabled.etag != fetched.etag
    assert disabled.generation_id == created.generation_id
    assert disabled.status_updated_time.year > 2000
    assert rm.get_twin(device_id).status == "disabled"

    stale = fetched.etag
    assert (
        status_of(
            lambda: rm.update_device_with_certificate_authority(device_id, stale, status="enabled")
        )
        == 412
    )
    assert status_of(lambda: rm.delete_device(device_id, etag=stale)) == 412
    rm.delete_device(device_id, etag=disabled.etag)
    assert status_of(lambda: rm.get_device(device_id)) == 404
    assert status_of(lambda: rm.get_twin(device_id)) == 404
    assert status_of(lambda: rm.delete_device(device_id)) == 404


def test_creating_an_existing_device_is_a_409_device_already_exists(rm: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    with pytest.raises(HttpOperationError) as caught:
        rm.create_device_with_sas(device_id, None, None, "enabled")
    assert caught.value.response.status_code == 409
    assert error_code(caught.value.response) == "DeviceAlreadyExists"


def test_sas_and_x509_devices_keep_their_credentials(rm: Any):
    sas_id, x509_id = new_id("sas"), new_id("x509")
    generated = rm.create_device_with_sas(sas_id, None, None, "enabled")
    keys = generated.authentication.symmetric_key
    assert generated.authentication.type == "sas"
    assert len(base64.b64decode(keys.primary_key)) == 32
    assert keys.primary_key != keys.secondary_key

    rm.create_device_with_x509(x509_id, THUMB_A, THUMB_B, "enabled")
    device = rm.get_device(x509_id)
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == THUMB_A
    assert device.authentication.x509_thumbprint.secondary_thumbprint == THUMB_B
    twin = rm.get_twin(x509_id)
    assert twin.authentication_type == "selfSigned"
    assert twin.x509_thumbprint.primary_thumbprint == THUMB_A

    # Disable the way the app does: send back what was read, status changed, auth untouched.
    device.status = "disabled"
    updated = rm.protocol.devices.create_or_update_identity(x509_id, device, f'"{device.etag}"')
    assert updated.status == "disabled"
    assert updated.authentication.x509_thumbprint.primary_thumbprint == THUMB_A

    assert status_of(lambda: rm.create_device_with_x509(new_id(), "xyz", None, "enabled")) == 400
    assert {d.device_id for d in rm.get_devices()} >= {sas_id, x509_id}


def test_device_ids_with_every_allowed_character_round_trip_url_escaped(rm: Any, http: Any):
    device_id = f"odd{ODD_ID_CHARS}{uuid.uuid4().hex[:6]}"
    rm.create_device_with_certificate_authority(device_id, "enabled")
    assert rm.get_device(device_id).device_id == device_id
    twin = rm.update_twin(device_id, Twin(tags={"k": 1}), None)
    assert twin.device_id == device_id
    assert raw_twin(http, device_id)["tags"] == {"k": 1}
    rm.delete_device(device_id)
    assert status_of(lambda: rm.get_device(device_id)) == 404


@pytest.mark.parametrize("device_id", ["bad/id", "bad#id", "x" * 129, "späti"])
def test_invalid_device_ids_are_400_argument_invalid(rm: Any, device_id: str):
    with pytest.raises(HttpOperationError) as caught:
        rm.create_device_with_certificate_authority(device_id, "enabled")
    assert caught.value.response.status_code == 400
    assert error_code(caught.value.response) == "ArgumentInvalid"


# --- twins --------------------------------------------------------------------------------


def test_a_new_twin_exists_at_version_1_with_empty_sections(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_x509(device_id, THUMB_A, None, "enabled")
    twin = raw_twin(http, device_id)
    assert twin["deviceId"] == device_id
    assert twin["version"] == 1
    assert twin["tags"] == {}
    assert twin["status"] == "enabled"
    assert twin["connectionState"] == "Disconnected"
    assert twin["authenticationType"] == "selfSigned"
    assert twin["deviceEtag"] == rm.get_device(device_id).etag
    assert twin["capabilities"] == {"iotEdge": False}
    for section in ("desired", "reported"):
        value = twin["properties"][section]
        assert set(value) == {"$metadata", "$version"}
        assert value["$version"] == 1
        assert value["$metadata"]["$lastUpdated"].endswith("Z")


def test_twin_updates_honour_the_etag(rm: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    first = rm.get_twin(device_id)
    patch = Twin(properties=TwinProperties(desired={"rate": 5}))
    second = rm.update_twin(device_id, patch, first.etag)
    assert second.version == first.version + 1
    assert second.etag != first.etag
    assert second.properties.desired["rate"] == 5

    with pytest.raises(HttpOperationError) as caught:
        rm.update_twin(device_id, Twin(tags={"late": True}), first.etag)
    assert caught.value.response.status_code == 412
    assert error_code(caught.value.response) == "PreconditionFailed"
    assert rm.get_twin(device_id).version == second.version

    third = rm.update_twin(device_id, Twin(tags={"any": True}), None)  # If-Match "*"
    assert third.version == second.version + 1
    assert status_of(lambda: rm.get_twin(new_id("missing"))) == 404
    assert status_of(lambda: rm.update_twin(new_id("missing"), Twin(tags={"a": 1}))) == 404


def test_merge_patch_merges_nested_objects_and_null_deletes(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    rm.update_twin(
        device_id,
        Twin(
            tags={"site": {"plant": "p1", "line": 3}, "old": "x"},
            properties=TwinProperties(desired={"cfg": {"rate": 5, "mode": "eco"}, "gone": 1}),
        ),
    )
    before = raw_twin(http, device_id)
    rm.update_twin(
        device_id,
        Twin(
            tags={"site": {"line": None, "cell": "c2"}, "old": None},
            properties=TwinProperties(desired={"cfg": {"mode": None, "burst": 2}, "gone": None}),
        ),
    )
    twin = raw_twin(http, device_id)
    assert twin["tags"] == {"site": {"plant": "p1", "cell": "c2"}}
    values = {k: v for k, v in desired(twin).items() if not k.startswith("$")}
    assert values == {"cfg": {"rate": 5, "burst": 2}}

    meta, old_meta = desired(twin)["$metadata"], desired(before)["$metadata"]
    version = desired(twin)["$version"]
    assert set(meta) == {"$lastUpdated", "$lastUpdatedVersion", "cfg"}
    assert set(meta["cfg"]) == {"$lastUpdated", "$lastUpdatedVersion", "rate", "burst"}
    assert meta["$lastUpdatedVersion"] == meta["cfg"]["$lastUpdatedVersion"] == version
    assert meta["cfg"]["burst"]["$lastUpdatedVersion"] == version
    assert meta["cfg"]["rate"] == old_meta["cfg"]["rate"]  # untouched: keeps its stamp
    assert meta["cfg"]["rate"]["$lastUpdatedVersion"] < version


def test_versions_count_every_change_and_tags_bump_the_desired_version(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    start = raw_twin(http, device_id)
    rm.update_twin(device_id, Twin(tags={"a": 1}))
    after_tags = raw_twin(http, device_id)
    assert after_tags["version"] == start["version"] + 1
    assert desired(after_tags)["$version"] == desired(start)["$version"] + 1
    assert desired(after_tags)["$metadata"] == desired(start)["$metadata"]
    assert after_tags["etag"] != start["etag"]

    rm.update_twin(device_id, Twin(properties=TwinProperties(desired={"d": 1})))
    after_desired = raw_twin(http, device_id)
    assert after_desired["version"] == start["version"] + 2
    assert desired(after_desired)["$version"] == desired(start)["$version"] + 2
    assert (
        desired(after_desired)["$metadata"]["$lastUpdatedVersion"]
        == (desired(after_desired)["$version"])
    )
    assert after_desired["properties"]["reported"]["$version"] == 1


def test_put_replaces_tags_and_desired(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    rm.update_twin(
        device_id, Twin(tags={"a": 1, "b": 2}, properties=TwinProperties(desired={"x": 1}))
    )
    current = rm.get_twin(device_id)
    replaced = rm.replace_twin(
        device_id,
        Twin(tags={"only": True}, properties=TwinProperties(desired={"y": {"z": 2}})),
        current.etag,
    )
    assert replaced.version == current.version + 1
    assert replaced.tags == {"only": True}
    twin = raw_twin(http, device_id)
    assert {k: v for k, v in desired(twin).items() if not k.startswith("$")} == {"y": {"z": 2}}
    assert set(desired(twin)["$metadata"]) == {"$lastUpdated", "$lastUpdatedVersion", "y"}
    assert status_of(lambda: rm.replace_twin(device_id, Twin(tags={}), current.etag)) == 412


def test_the_service_cannot_write_reported_properties(rm: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    patch = Twin(properties=TwinProperties(reported={"fw": "1.0"}))
    with pytest.raises(HttpOperationError) as caught:
        rm.update_twin(device_id, patch)
    assert caught.value.response.status_code == 400
    assert error_code(caught.value.response) == "ArgumentInvalid"
    assert status_of(lambda: rm.replace_twin(device_id, patch)) == 400
    assert rm.get_twin(device_id).version == 1


@pytest.mark.parametrize(
    "patch",
    [
        {"tags": {"a.b": 1}},
        {"tags": {"$etag": 1}},
        {"tags": {"with space": 1}},
        {"properties": {"desired": {"cfg": {"$x": 1}}}},
        {"tags": {"big": "x" * 5000}},
        {"tags": {"many": ["x" * 3000] * 3}},
        {"properties": {"desired": json.loads('{"a":' * 11 + "1" + "}" * 11)}},
        {"tags": [1, 2]},
        {"deviceId": "someone-else", "tags": {"a": 1}},
    ],
)
def test_twin_documents_outside_iot_hub_rules_are_400(http: Any, rm: Any, patch: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    response = http.patch(twin_path(device_id), params={"api-version": "2021-04-12"}, json=patch)
    assert response.status_code == 400, response.text
    assert error_code(response) == "ArgumentInvalid"
    assert raw_twin(http, device_id)["version"] == 1


def test_the_device_side_endpoint_updates_reported_properties(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    before = raw_twin(http, device_id)
    response = report(http, device_id, {"fw": "1.2", "net": {"rssi": -60, "ssid": "x"}})
    assert response.status_code == 200, response.text
    response = report(http, device_id, {"net": {"ssid": None}})
    twin = raw_twin(http, device_id)
    assert response.json() == twin
    reported = twin["properties"]["reported"]
    assert {k: v for k, v in reported.items() if not k.startswith("$")} == {
        "fw": "1.2",
        "net": {"rssi": -60},
    }
    assert reported["$version"] == 3
    assert twin["version"] == before["version"] + 2
    assert twin["etag"] != before["etag"]
    meta = reported["$metadata"]
    assert set(meta) == {"$lastUpdated", "fw", "net"}
    assert set(meta["net"]) == {"$lastUpdated", "rssi"}
    assert desired(twin) == desired(before)

    assert report(http, new_id("missing"), {"a": 1}).status_code == 404
    assert report(http, device_id, [1]).status_code == 400
    device = rm.get_device(device_id)
    rm.update_device_with_certificate_authority(device_id, device.etag, status="disabled")
    assert report(http, device_id, {"fw": "1.3"}).status_code == 403


# --- authentication -----------------------------------------------------------------------


def _unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert error_code(response) == "IotHubUnauthorizedAccess"


def test_bad_sas_tokens_are_401(iothub_emulator: RunningIotHubEmulator):
    hub = iothub_emulator.hub(HUB_US)
    other = iothub_emulator.hub(HUB_EU)
    key = hub.connection_string.rsplit("SharedAccessKey=", 1)[1]
    wrong_key = base64.b64encode(b"k" * 32).decode()
    bad_rm = registry_manager(
        hub.connection_string.replace(key, wrong_key), iothub_emulator.ca_cert
    )
    assert status_of(lambda: bad_rm.get_devices()) == 401

    tokens = {
        "expired": SasToken(hub.host_name, key, "iothubowner", ttl=-60),
        "other hub's resource": SasToken(other.host_name, key, "iothubowner"),
        "unknown policy": SasToken(hub.host_name, key, "nosuchpolicy"),
        "device token (no skn)": SasToken(hub.host_name, key),
    }
    url = f"{hub.url}/devices?api-version=2021-04-12"
    with httpx.Client(verify=iothub_emulator.ssl_context()) as client:
        for token in tokens.values():
            _unauthorized(client.get(url, headers={"Authorization": str(token)}))
        _unauthorized(client.get(url))
        _unauthorized(client.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}))
        _unauthorized(client.get(url, headers={"Authorization": "SharedAccessSignature sr=x"}))
        _unauthorized(client.get(url, headers={"Authorization": "Bearer not-the-token"}))
        # The resource may carry a path, and the hub's Azure name identifies it too.
        for resource in (f"{hub.host_name}/devices/d1", HUB_US):
            token = SasToken(resource, key, "iothubowner")
            assert client.get(url, headers={"Authorization": str(token)}).status_code == 200


def test_policies_carry_iot_hub_rights(iothub_emulator: RunningIotHubEmulator, rm: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    service = iothub_emulator.registry_manager(policy="service")
    assert service.update_twin(device_id, Twin(tags={"by": "service"})).tags == {"by": "service"}
    assert status_of(lambda: service.get_device(device_id)) == 401
    assert status_of(lambda: service.create_device_with_sas(new_id(), None, None, "enabled")) == 401
    reader = iothub_emulator.registry_manager(policy="registryRead")
    assert reader.get_device(device_id).device_id == device_id
    assert status_of(lambda: reader.update_twin(device_id, Twin(tags={"x": 1}))) == 401


class _StaticCredential:
    """A TokenCredential handing out a fixed token: for tokens the identity service never would."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def _token_manager(emulator: RunningIotHubEmulator, credential: Any) -> Any:
    host = emulator.hub(HUB_US).host_name
    manager = IoTHubRegistryManager.from_token_credential(host, credential)
    manager.protocol.config.connection.verify = emulator.ca_cert
    manager.protocol.config.retry_policy.retries = 0
    return manager


@pytest.fixture(scope="module")
def identity(iothub_emulator: RunningIotHubEmulator) -> Iterator[RunningIdentity]:
    """The identity service on the key pair the module's emulator trusts."""
    base = iothub_emulator.identity_dir.parent
    running = start_identity_service(base / "identity-run", iothub_emulator.identity_dir)
    try:
        yield running
    finally:
        stop_children([running.child])


def test_a_managed_identity_token_reads_and_writes_twins(
    iothub_emulator: RunningIotHubEmulator, identity: RunningIdentity, rm: Any
):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    with managed_identity_env(identity):
        manager = _token_manager(iothub_emulator, ManagedIdentityCredential())
        twin = manager.get_twin(device_id)
        updated = manager.update_twin(device_id, Twin(tags={"by": "identity"}), twin.etag)
    assert twin.device_id == device_id
    assert updated.tags == {"by": "identity"}
    assert rm.get_twin(device_id).tags == {"by": "identity"}


def test_bad_bearer_tokens_are_401_through_the_sdk(iothub_emulator: RunningIotHubEmulator, rm: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    bad = BadTokens(iothub_emulator.token_issuer())
    good = _StaticCredential(iothub_emulator.bearer_token())
    assert _token_manager(iothub_emulator, good).get_twin(device_id).device_id == device_id
    assert set(good.scopes) == {"https://iothubs.azure.net/.default"}
    tokens = {
        "audience": bad.for_another_audience("https://storage.azure.com"),
        "expired": bad.expired("https://iothubs.azure.net"),
        "another key": bad.signed_by_another_key("https://iothubs.azure.net"),
        "not yet valid": bad.not_yet_valid("https://iothubs.azure.net"),
        "issuer": bad.from_another_issuer("https://iothubs.azure.net"),
    }
    for name, token in tokens.items():
        manager = _token_manager(iothub_emulator, _StaticCredential(token))
        with pytest.raises(HttpOperationError) as refused:
            manager.get_twin(device_id)
        response = refused.value.response
        assert response.status_code == 401, name
        assert error_code(response) == "IotHubUnauthorizedAccess", name
        assert token not in response.text, name


def test_bearer_refusals_say_what_is_wrong(iothub_emulator: RunningIotHubEmulator):
    bad = BadTokens(iothub_emulator.token_issuer())
    url = f"{iothub_emulator.hub(HUB_US).url}/devices?api-version=2021-04-12"
    expectations = {
        bad.for_another_audience("https://storage.azure.com"): "audience",
        bad.expired("https://iothubs.azure.net"): "expired",
        bad.signed_by_another_key("https://iothubs.azure.net"): "signature",
        bad.from_another_issuer("https://iothubs.azure.net"): "issuer",
    }
    with httpx.Client(verify=iothub_emulator.ssl_context()) as client:
        for token, word in expectations.items():
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
            _unauthorized(response)
            assert word in response.json()["Message"], response.text
        for audience in ("https://iothubs.azure.net", "https://iothubs.azure.net/"):
            token = iothub_emulator.bearer_token(audience)
            accepted = client.get(url, headers={"Authorization": f"Bearer {token}"})
            assert accepted.status_code == 200, accepted.text


def test_without_an_issuer_key_bearer_tokens_are_refused(tmp_path: Path):
    emulator = start_iothub_emulator(
        tmp_path / "run", tmp_path / "data" / "iothub", hubs=[(HUB_US, 0)], trust_tokens=False
    )
    try:
        url = f"{emulator.hub(HUB_US).url}/devices?api-version=2021-04-12"
        token = emulator.bearer_token()
        with httpx.Client(verify=emulator.ssl_context()) as client:
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
        _unauthorized(response)
        assert "--token-issuer-key" in response.json()["Message"]
    finally:
        stop_children([emulator.child])


# --- routing details ----------------------------------------------------------------------


def test_unknown_routes_methods_and_missing_api_version_answer_json_errors(http: Any):
    not_found = http.get("/nothing/here", params={"api-version": "2021-04-12"})
    assert not_found.status_code == 404
    assert not_found.headers["content-type"].startswith("application/json")
    wrong_method = http.post("/twins/x", params={"api-version": "2021-04-12"})
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "PATCH", "PUT"}
    assert http.get("/devices").status_code == 400
    bad_json = http.patch(
        "/devstack/twins/x/reported",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 400


# --- throttling ---------------------------------------------------------------------------


def _concurrent_twin_updates(
    emulator: RunningIotHubEmulator, device_id: str, count: int
) -> list[tuple[int, str | None]]:
    """`count` SDK twin updates released at once from as many threads, connections warm."""
    managers = [emulator.registry_manager() for _ in range(count)]
    barrier = threading.Barrier(count)
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def worker(manager: Any, index: int) -> None:
        manager.get_twin(device_id)  # opens the TLS connection: not a twin update
        barrier.wait()
        try:
            manager.update_twin(device_id, Twin(tags={f"t{index}": index}))
            outcome: tuple[int, str | None] = (200, None)
        except HttpOperationError as exc:
            outcome = (exc.response.status_code, exc.response.headers.get("Retry-After"))
        with lock:
            results.append(outcome)

    threads = [
        threading.Thread(target=worker, args=(manager, i)) for i, manager in enumerate(managers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_more_than_50_concurrent_twin_updates_are_throttled_at_the_s1_limit(
    iothub_emulator: RunningIotHubEmulator, rm: Any
):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    time.sleep(1.1)  # let the bucket refill from earlier tests
    results = _concurrent_twin_updates(iothub_emulator, device_id, 100)
    statuses = [status for status, _ in results]
    assert len(results) == 100
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 50
    assert statuses.count(429) >= 1
    assert all(after is not None and int(after) >= 1 for status, after in results if status == 429)
    assert rm.get_twin(device_id).version == 1 + statuses.count(200)


def test_low_limits_throttle_twin_updates_and_identity_operations(tmp_path: Path):
    emulator = start_iothub_emulator(
        tmp_path / "run",
        tmp_path / "data" / "iothub",
        hubs=[(HUB_US, 0)],
        extra_args=["--twin-updates-per-second", "5", "--identity-ops-per-minute", "3"],
    )
    try:
        manager = emulator.registry_manager()
        for index in range(3):
            manager.create_device_with_certificate_authority(f"limited-{index}", "enabled")
        with pytest.raises(HttpOperationError) as caught:
            manager.create_device_with_certificate_authority("limited-3", "enabled")
        response = caught.value.response
        assert response.status_code == 429
        assert error_code(response) == "ThrottlingException"
        assert int(response.headers["Retry-After"]) >= 1

        statuses = []
        with emulator.http() as client:
            for index in range(12):
                statuses.append(
                    client.patch(
                        twin_path("limited-0"),
                        params={"api-version": "2021-04-12"},
                        json={"tags": {"n": index}},
                    ).status_code
                )
            assert report(client, "limited-0", {"x": 1}).status_code == 429
        assert 5 <= statuses.count(200) <= 7
        assert statuses[:5] == [200] * 5
        assert statuses.count(429) == 12 - statuses.count(200)
        # Reads are not twin updates.
        assert manager.get_twin("limited-0").version == 1 + statuses.count(200)
    finally:
        stop_children([emulator.child])


# --- fault injection ----------------------------------------------------------------------


def test_injected_faults_answer_the_next_matching_requests(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    rule = {"status": 503, "count": 2, "pathPrefix": "/twins"}
    assert http.post("/devstack/faults", json=rule).json()["faults"][0]["count"] == 2
    assert rm.get_device(device_id).device_id == device_id  # other paths unaffected
    with pytest.raises(ClientRequestError):  # urllib3 turns a 503 into a RetryError
        rm.get_twin(device_id)
    response = http.get(twin_path(device_id), params={"api-version": "2021-04-12"})
    assert response.status_code == 503
    assert error_code(response) == "ServiceUnavailable"
    assert rm.get_twin(device_id).device_id == device_id  # count used up
    assert http.get("/devstack/faults").json() == {"faults": []}

    http.post("/devstack/faults", json={"status": 500, "method": "PATCH", "errorCode": "Boom"})
    assert rm.get_twin(device_id).version == 1
    with pytest.raises(HttpOperationError) as caught:
        rm.update_twin(device_id, Twin(tags={"a": 1}))
    assert caught.value.response.status_code == 500
    assert error_code(caught.value.response) == "Boom"

    http.post("/devstack/faults", json={"latencyMs": 300, "pathPrefix": "/devices"})
    started = time.monotonic()
    assert rm.get_device(device_id).device_id == device_id
    assert time.monotonic() - started >= 0.3

    http.post("/devstack/faults", json={"status": 503, "count": 100})
    assert http.get("/devstack/events").status_code == 200  # inspection is never faulted
    assert http.post("/devstack/faults", json={}).json() == {"faults": []}
    assert rm.get_twin(device_id).version == 1
    bad_rules: list[Any] = [{"status": 200}, {"count": 0, "status": 503}, {"sttus": 503}, []]
    for body in bad_rules:
        assert http.post("/devstack/faults", json=body).status_code == 400


# --- notifications ------------------------------------------------------------------------


def _check_envelope(event: dict[str, Any], device_id: str, op_type: str, timestamp: str) -> None:
    assert event["properties"] == {
        "hubName": "hub-us-east",
        "deviceId": device_id,
        "operationTimestamp": timestamp,
        "iothub-message-schema": "twinChangeNotification",
        "opType": op_type,
    }
    system = event["systemProperties"]
    assert set(system) == {
        "iothub-message-source",
        "iothub-connection-device-id",
        "iothub-enqueuedtime",
        "content-type",
        "content-encoding",
        "message-id",
    }
    assert system["iothub-message-source"] == "twinChangeEvents"
    assert system["iothub-connection-device-id"] == device_id
    assert system["content-type"] == "application/json"
    assert system["content-encoding"] == "utf-8"
    assert uuid.UUID(system["message-id"])
    assert system["iothub-enqueuedtime"] == event["enqueuedTimeUtc"]
    assert event["enqueuedTimeUtc"].endswith("Z")
    assert event["enqueuedTimeUtc"] >= timestamp
    assert event["partitionKey"] is None
    assert isinstance(event["offset"], str)


def test_update_twin_notifications_carry_only_the_changes(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    rm.update_twin(
        device_id,
        Twin(tags={"old": 1}, properties=TwinProperties(desired={"cfg": {"gone": 1}})),
    )
    after = last_sequence_number(http)
    patch = Twin(
        tags={"site": "p1", "old": None},
        properties=TwinProperties(desired={"cfg": {"rate": 5, "gone": None}}),
    )
    rm.update_twin(device_id, patch)
    rm.update_twin(device_id, patch)  # an identical write still emits
    twin = raw_twin(http, device_id)
    events = hub_events(http, after)
    assert [e["sequenceNumber"] for e in events] == [after + 1, after + 2]
    first, second = events
    assert int(second["offset"]) == int(first["offset"]) + len(first["body"].encode())

    stamp = desired(twin)["$metadata"]["$lastUpdated"]
    version = desired(twin)["$version"]
    assert event_body(second) == {
        "version": twin["version"],
        "tags": {"site": "p1", "old": None},
        "properties": {
            "desired": {
                "cfg": {"rate": 5, "gone": None},
                "$metadata": {
                    "$lastUpdated": stamp,
                    "$lastUpdatedVersion": version,
                    "cfg": {
                        "$lastUpdated": stamp,
                        "$lastUpdatedVersion": version,
                        "rate": {"$lastUpdated": stamp, "$lastUpdatedVersion": version},
                    },
                },
                "$version": version,
            }
        },
    }
    assert event_body(first)["version"] == twin["version"] - 1
    _check_envelope(second, device_id, "updateTwin", stamp)

    rm.update_twin(device_id, Twin(tags={"only": "tags"}))
    (tags_event,) = hub_events(http, after + 2)
    assert event_body(tags_event) == {"version": twin["version"] + 1, "tags": {"only": "tags"}}


def test_replace_and_reported_notifications(rm: Any, http: Any):
    device_id = new_id()
    rm.create_device_with_certificate_authority(device_id, "enabled")
    after = last_sequence_number(http)
    rm.replace_twin(
        device_id, Twin(tags={"t": 1}, properties=TwinProperties(desired={"d": {"e": 2}}))
    )
    replaced = raw_twin(http, device_id)
    report(http, device_id, {"fw": "1.0", "old": None})
    report(http, device_id, {"fw": "1.0", "old": None})
    reported = raw_twin(http, device_id)
    replace_event, report_event, again = hub_events(http, after)

    assert event_body(replace_event) == {
        "deviceId": device_id,
        "etag": replaced["etag"],
        "version": replaced["version"],
        "tags": {"t": 1},
        "properties": replaced["properties"],
    }
    _check_envelope(
        replace_event, device_id, "replaceTwin", desired(replaced)["$metadata"]["$lastUpdated"]
    )

    section = reported["properties"]["reported"]
    stamp = section["$metadata"]["$lastUpdated"]
    assert event_body(again) == {
        "version": reported["version"],
        "properties": {
            "reported": {
                "fw": "1.0",
                "old": None,
                "$metadata": {"$lastUpdated": stamp, "fw": {"$lastUpdated": stamp}},
                "$version": section["$version"],
            }
        },
    }
    assert event_body(report_event)["version"] == reported["version"] - 1
    _check_envelope(again, device_id, "updateTwin", stamp)


def test_events_are_delivered_in_order_and_retried_until_the_sink_accepts(tmp_path: Path):
    us_path, eu_path = (
        "/admin/devstack/eventhubs/hub-us-east",
        "/admin/devstack/eventhubs/hub-eu-west",
    )
    sink = EventSink(statuses={us_path: [503, 404, 500]})
    emulator = start_iothub_emulator(
        tmp_path / "run",
        tmp_path / "data" / "iothub",
        extra_args=[
            "--events-url",
            sink.url("/admin/devstack/eventhubs/{hub}"),
            "--twin-updates-per-second",
            "0",
        ],
    )
    try:
        us, eu = emulator.registry_manager(HUB_US), emulator.registry_manager(HUB_EU)
        us.create_device_with_certificate_authority("d1", "enabled")
        eu.create_device_with_certificate_authority("d1", "enabled")
        for index in range(5):
            us.update_twin("d1", Twin(tags={"n": index}))
        eu.update_twin("d1", Twin(tags={"eu": True}))

        delivered = sink.wait_for(us_path, 5)
        with emulator.http(HUB_US) as client:
            assert delivered == hub_events(client)  # the listed and delivered shapes agree
        assert [e["sequenceNumber"] for e in delivered] == [1, 2, 3, 4, 5]
        assert [json.loads(e["body"])["tags"] for e in delivered] == [{"n": i} for i in range(5)]
        failed = [(status, events) for path, status, events in sink.attempts if path == us_path]
        assert [status for status, _ in failed[:4]] == [503, 404, 500, 200]
        assert all(events[0]["sequenceNumber"] == 1 for _, events in failed[:4])

        (eu_event,) = sink.wait_for(eu_path, 1)
        assert eu_event["properties"]["hubName"] == "hub-eu-west"
        assert eu_event["sequenceNumber"] == 1

        # Bursts go out in batches of at most 100, still in order.
        with emulator.http(HUB_US) as client:
            for index in range(150):
                client.patch(
                    "/twins/d1", params={"api-version": "2021-04-12"}, json={"tags": {"m": index}}
                ).raise_for_status()
        delivered = sink.wait_for(us_path, 155)
        assert [e["sequenceNumber"] for e in delivered] == list(range(1, 156))
        sizes = [len(events) for path, events in sink.accepted if path == us_path]
        assert max(sizes) <= 100
    finally:
        stop_children([emulator.child])
        sink.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_restart_keeps_keys_devices_and_undelivered_events(tmp_path: Path):
    sink_port = _free_port()
    path = "/events/hub-us-east"
    args = ["--events-url", f"http://127.0.0.1:{sink_port}/events/{{hub}}"]
    data_dir = tmp_path / "data" / "iothub"
    first = start_iothub_emulator(tmp_path / "run", data_dir, hubs=[(HUB_US, 0)], extra_args=args)
    try:
        key = first.connection_string().rsplit("=", 1)[1]
        manager = first.registry_manager()
        manager.create_device_with_certificate_authority("kept", "enabled")
        manager.update_twin("kept", Twin(tags={"before": "restart"}))  # sink down: pending
        time.sleep(0.3)
    finally:
        stop_children([first.child])

    second = start_iothub_emulator(tmp_path / "run", data_dir, hubs=[(HUB_US, 0)], extra_args=args)
    sink = None
    try:
        assert second.connection_string().rsplit("=", 1)[1] == key
        manager = second.registry_manager()
        twin = manager.get_twin("kept")
        assert (twin.version, twin.tags) == (2, {"before": "restart"})
        manager.update_twin("kept", Twin(tags={"after": "restart"}))
        sink = EventSink(port=sink_port)
        delivered = sink.wait_for(path, 2)
        assert [e["sequenceNumber"] for e in delivered] == [1, 2]
        assert [json.loads(e["body"])["tags"] for e in delivered] == [
            {"before": "restart"},
            {"after": "restart"},
        ]
    finally:
        stop_children([second.child])
        if sink is not None:
            sink.close()


# --- hubs are independent -----------------------------------------------------------------


def test_two_hubs_keep_separate_devices_twins_keys_and_events(
    iothub_emulator: RunningIotHubEmulator,
):
    us, eu = iothub_emulator.registry_manager(HUB_US), iothub_emulator.registry_manager(HUB_EU)
    device_id = new_id("shared")
    us.create_device_with_certificate_authority(device_id, "enabled")
    assert status_of(lambda: eu.get_device(device_id)) == 404
    eu.create_device_with_certificate_authority(device_id, "enabled")
    with iothub_emulator.http(HUB_EU) as eu_http:
        eu_after = last_sequence_number(eu_http)
        us.update_twin(device_id, Twin(tags={"where": "us"}))
        assert eu.get_twin(device_id).tags == {}
        assert hub_events(eu_http, eu_after) == []
        eu.update_twin(device_id, Twin(tags={"where": "eu"}))
        (event,) = hub_events(eu_http, eu_after)
        assert event["properties"]["hubName"] == "hub-eu-west"
    assert us.get_twin(device_id).tags == {"where": "us"}

    us_string = iothub_emulator.connection_string(HUB_US)
    eu_host = iothub_emulator.hub(HUB_EU).host_name
    crossed = registry_manager(
        us_string.replace(iothub_emulator.hub(HUB_US).host_name, eu_host),
        iothub_emulator.ca_cert,
    )
    assert status_of(lambda: crossed.get_twin(device_id)) == 401
