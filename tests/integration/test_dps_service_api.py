"""The DPS emulator's service API over real HTTPS: SAS auth, etags, groups devices use."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devstack.certificates import TestCertificateAuthority
from devstack.dps_device_client import register_device
from devstack.processes import Child, stop_children
from devstack.tls import DevstackTls, ensure_tls
from operator_cli.dps_auth import parse_connection_string, sas_token
from tests.integration.journey_fixtures import ID_SCOPE, issue_device, start_dps_emulator

API = "api-version=2021-10-01"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, DevstackTls]]:
    base = tmp_path_factory.mktemp("dps-service")
    tls = ensure_tls(base)
    child = start_dps_emulator(
        base / "run", base / "dps", tls, extra_args=["--retry-scale", "0.001"]
    )
    try:
        yield child, tls
    finally:
        stop_children([child])


@pytest.fixture
async def http(emulator: tuple[Child, DevstackTls]) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(emulator[1].ca_cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


def _token(child: Child, *, key: str | None = None, policy: str | None = None, **kw: Any) -> str:
    connection = parse_connection_string(child.info["serviceConnectionString"], "test")
    if key is not None or policy is not None:
        connection = type(connection)(
            connection.host_name, policy or connection.policy, key or connection.key
        )
    return sas_token(connection, now=kw.get("now", time.time()), lifetime=kw.get("lifetime", 600))


def _url(child: Child, path: str, query: str = API) -> str:
    return f"{child.info['serviceUrl']}{path}?{query}"


def _group(group_id: str, ca: TestCertificateAuthority, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "enrollmentGroupId": group_id,
        "attestation": {
            "type": "x509",
            "x509": {"signingCertificates": {"primary": {"certificate": ca.issued.pem}}},
        },
        "allocationPolicy": "custom",
        "customAllocationDefinition": {
            "webhookUrl": "https://127.0.0.1:9/api/allocate?code=k",
            "apiVersion": "2021-10-01",
        },
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
    }
    return record | changes


async def _call(
    http: aiohttp.ClientSession,
    child: Child,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    auth: str | None = "ok",
) -> tuple[int, Any, Any]:
    all_headers = dict(headers or {})
    if auth == "ok":
        all_headers["Authorization"] = _token(child)
    elif auth is not None:
        all_headers["Authorization"] = auth
    async with http.request(
        method,
        _url(child, path),
        data=None if body is None else json.dumps(body),
        headers=all_headers,
    ) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None, response.headers


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        (None, "missing"),
        ("Bearer abc", "not a SharedAccessSignature"),
        ("wrong-key", "signature does not match"),
        ("wrong-policy", "no shared access policy"),
        ("expired", "expired"),
        ("other-host", "not this service"),
    ],
)
async def test_requests_without_a_valid_signature_are_401(emulator, http, auth, problem):
    child, _ = emulator
    tokens = {
        "wrong-key": _token(child, key="AAAA" + child.info["serviceConnectionString"][-40:]),
        "wrong-policy": _token(child, policy="registryRead"),
        "expired": _token(child, now=time.time() - 7200, lifetime=60),
    }
    if auth == "other-host":
        connection = parse_connection_string(child.info["serviceConnectionString"], "t")
        tokens[auth] = sas_token(
            type(connection)("other.example:1", connection.policy, connection.key),
            now=time.time(),
        )
    header = tokens.get(auth, auth) if auth else None
    status, body, headers = await _call(
        http, child, "GET", "/enrollmentGroups/anything", auth=header
    )
    assert status == 401
    assert body["errorCode"] == 401002
    assert problem in body["message"]
    assert set(body) >= {"errorCode", "trackingId", "message", "timestampUtc"}
    assert headers["x-ms-error-code"] == "IotDpsUnauthorized"


async def test_the_api_version_is_required(emulator, http):
    child, _ = emulator
    async with http.get(
        _url(child, "/enrollmentGroups/x", query=""),
        headers={"Authorization": _token(child)},
    ) as response:
        assert response.status == 400
        assert "api-version" in (await response.json())["message"]


async def test_a_group_is_created_read_updated_with_its_etag_and_deleted(emulator, http):
    child, _ = emulator
    ca = TestCertificateAuthority(name="Service API CA")
    status, created, _ = await _call(
        http, child, "PUT", "/enrollmentGroups/svc-one", body=_group("svc-one", ca)
    )
    assert status == 200
    assert created["etag"]
    assert created["createdDateTimeUtc"]
    primary = created["attestation"]["x509"]["signingCertificates"]["primary"]
    assert "certificate" not in primary
    assert primary["info"]["sha256Thumbprint"] == ca.issued.sha256_thumbprint

    status, read, headers = await _call(http, child, "GET", "/enrollmentGroups/svc-one")
    assert status == 200
    assert read["etag"] == created["etag"] == headers["ETag"]

    stale = '"not-the-etag"'
    status, body, headers = await _call(
        http,
        child,
        "PUT",
        "/enrollmentGroups/svc-one",
        body=_group("svc-one", ca, provisioningStatus="disabled"),
        headers={"If-Match": stale},
    )
    assert status == 412
    assert headers["x-ms-error-code"] == "PreconditionFailed"
    assert body["errorCode"] == 412002

    status, updated, _ = await _call(
        http,
        child,
        "PUT",
        "/enrollmentGroups/svc-one",
        body=_group("svc-one", ca, provisioningStatus="disabled"),
        headers={"If-Match": created["etag"]},
    )
    assert status == 200
    assert updated["provisioningStatus"] == "disabled"
    assert updated["etag"] != created["etag"]
    assert updated["createdDateTimeUtc"] == created["createdDateTimeUtc"]

    status, _, _ = await _call(
        http, child, "DELETE", "/enrollmentGroups/svc-one", headers={"If-Match": created["etag"]}
    )
    assert status == 412
    status, _, _ = await _call(
        http, child, "DELETE", "/enrollmentGroups/svc-one", headers={"If-Match": updated["etag"]}
    )
    assert status == 204
    status, body, _ = await _call(http, child, "GET", "/enrollmentGroups/svc-one")
    assert status == 404
    assert body["errorCode"] == 404201


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"allocationPolicy": "hashed"}, "allocationPolicy"),
        ({"attestation": {"type": "symmetricKey"}}, "attestation.type"),
        ({"customAllocationDefinition": {"apiVersion": "2021-10-01"}}, "webhookUrl"),
        ({"enrollmentGroupId": "another-id"}, "enrollmentGroupId"),
        ({"attestation": "x509"}, "attestation"),
        ({"attestation": {"type": "x509", "x509": []}}, "attestation.x509"),
        ({"reprovisionPolicy": {"updateHubAssignment": "yes"}}, "updateHubAssignment"),
    ],
)
async def test_an_invalid_group_is_400_naming_the_field(emulator, http, change, field_name):
    child, _ = emulator
    body = _group("svc-bad", TestCertificateAuthority(name="Bad CA")) | change
    status, answer, _ = await _call(http, child, "PUT", "/enrollmentGroups/svc-bad", body=body)
    assert status == 400
    assert field_name in answer["message"]
    status, _, _ = await _call(http, child, "GET", "/enrollmentGroups/svc-bad")
    assert status == 404


async def test_one_ca_cannot_sign_two_groups(emulator, http):
    child, _ = emulator
    ca = TestCertificateAuthority(name="Shared CA")
    status, _, _ = await _call(
        http, child, "PUT", "/enrollmentGroups/svc-first", body=_group("svc-first", ca)
    )
    assert status == 200
    status, body, _ = await _call(
        http, child, "PUT", "/enrollmentGroups/svc-second", body=_group("svc-second", ca)
    )
    assert status == 400
    assert "svc-first" in body["message"]


async def test_the_group_query_pages_with_continuations(emulator, http):
    child, _ = emulator
    for index in range(3):
        group_id = f"svc-page-{index}"
        ca = TestCertificateAuthority(name=f"Page CA {index}")
        status, _, _ = await _call(
            http, child, "PUT", f"/enrollmentGroups/{group_id}", body=_group(group_id, ca)
        )
        assert status == 200
    seen: list[str] = []
    continuation: str | None = None
    while True:
        headers = {"x-ms-max-item-count": "2"}
        if continuation:
            headers["x-ms-continuation"] = continuation
        status, page, answer = await _call(
            http,
            child,
            "POST",
            "/enrollmentGroups/query",
            body={"query": "SELECT * FROM enrollmentGroups"},
            headers=headers,
        )
        assert status == 200
        assert len(page) <= 2
        seen += [group["enrollmentGroupId"] for group in page]
        continuation = answer.get("x-ms-continuation")
        if not continuation:
            break
    assert {f"svc-page-{i}" for i in range(3)} <= set(seen)
    assert len(seen) == len(set(seen))


async def test_a_device_registers_against_a_group_put_a_moment_before(
    emulator, http, tmp_path: Path
):
    """The group is in force when the PUT answers: its CA is trusted, its webhook called."""
    child, tls = emulator
    ca = TestCertificateAuthority(name="Fresh CA")
    device = issue_device(ca, "svc-device-1", tmp_path)
    status, _, _ = await _call(
        http, child, "PUT", "/enrollmentGroups/svc-fresh", body=_group("svc-fresh", ca)
    )
    assert status == 200
    result = await register_device(
        host="127.0.0.1",
        port=child.info["port"],
        id_scope=ID_SCOPE,
        registration_id="svc-device-1",
        cert_file=device.cert,
        key_file=device.key,
        ca_file=tls.ca_cert,
    )
    # Nothing answers at the group's webhook: the registration fails, but it was this group's.
    assert result.registration_state["status"] == "failed"
    assert result.registration_state["x509"]["enrollmentGroupId"] == "svc-fresh"

    status, record, headers = await _call(http, child, "GET", "/registrations/SVC-device-1")
    assert status == 200
    assert record["registrationId"] == "svc-device-1"
    assert headers["ETag"] == record["etag"]
    status, _, _ = await _call(
        http, child, "DELETE", "/registrations/svc-device-1", headers={"If-Match": '"stale"'}
    )
    assert status == 412
    status, _, _ = await _call(http, child, "DELETE", "/registrations/svc-device-1")
    assert status == 204
    status, body, _ = await _call(http, child, "GET", "/registrations/svc-device-1")
    assert status == 404
    assert body["errorCode"] == 404201
    status, _, _ = await _call(http, child, "DELETE", "/registrations/svc-device-1")
    assert status == 404
