"""The DPS emulator against a scripted webhook: DPS's device API and allocation semantics."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from allocation.attestation import read_identity
from allocation.contract import AllocationRequest
from devstack.certificates import TestCertificateAuthority
from devstack.dps_device_client import DpsError, RegistrationResult, register_device
from devstack.dps_emulator.enrollment_groups import (
    EnrollmentGroupFiles,
    ensure_default_enrollment_group,
    groups_directory,
    load_enrollment_group,
    load_enrollment_groups,
    write_group_record,
)
from devstack.dps_emulator.errors import EnrollmentGroupError, HubsFileError
from devstack.dps_emulator.hubs import load_hubs_file
from devstack.processes import Child, ChildFailed, stop_children, wait_ready
from devstack.tls import DevstackTls, ensure_tls
from tests.integration.journey_fixtures import (
    EAST,
    ID_SCOPE,
    WEST,
    DeviceCredentials,
    issue_device,
    register_with_node,
    start_dps_emulator,
)

WEBHOOK_CODE = "scripted-webhook-key"
SHAPES = ("pem", "certificateInfo", "clientCertificateInfo", "flatInfo", "none")
API = "api-version=2019-03-31"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class WebhookCall:
    path: str
    content_type: str
    body: dict[str, Any]

    @property
    def context(self) -> dict[str, Any]:
        context: dict[str, Any] = self.body["deviceRuntimeContext"]
        return context


@dataclass
class ScriptedWebhook:
    """An allocation webhook that answers from a per-device script and records every call."""

    calls: list[WebhookCall] = field(default_factory=list)
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/allocate?code={WEBHOOK_CODE}"

    def script(self, registration_id: str, *answers: Answer) -> None:
        with self.lock:
            self.scripts[registration_id.casefold()] = list(answers)

    def calls_for(self, registration_id: str) -> list[WebhookCall]:
        with self.lock:
            return [
                call
                for call in self.calls
                if call.context["registrationId"].casefold() == registration_id.casefold()
            ]

    def answer(self, call: WebhookCall) -> Answer:
        registration_id = call.context["registrationId"]
        with self.lock:
            self.calls.append(call)
            script = self.scripts.get(registration_id.casefold())
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        return Answer(body=default_answer(registration_id))


def default_answer(registration_id: str, hub: str = EAST) -> dict[str, Any]:
    return {
        "iotHubHostName": hub,
        "initialTwin": {"tags": {"assetId": "A-1"}, "properties": {"desired": {"role": "x"}}},
        "payload": {"echo": registration_id},
    }


def serve_webhook(webhook: ScriptedWebhook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            call = WebhookCall(self.path, self.headers.get("content-type", ""), json.loads(raw))
            answer = webhook.answer(call)
            time.sleep(answer.delay)
            body = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
            data = body.encode() if answer.body is not None else b""
            self.send_response(answer.status)
            self.send_header("content-type", answer.content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class Setup:
    dps: Child
    tls: DevstackTls
    webhook: ScriptedWebhook
    groups: dict[str, EnrollmentGroupFiles]
    shapes: dict[str, Child]
    run_dir: Path


def _groups(data_dir: Path, webhook: ScriptedWebhook) -> dict[str, EnrollmentGroupFiles]:
    hubs = [EAST, WEST]
    groups = {
        "migrate": ensure_default_enrollment_group(data_dir, webhook_url=webhook.url, hubs=hubs),
        "reset": ensure_default_enrollment_group(
            data_dir,
            webhook_url=webhook.url,
            hubs=hubs,
            group_id="reset-group",
            migrate_device_data=False,
        ),
        "never": ensure_default_enrollment_group(
            data_dir,
            webhook_url=webhook.url,
            hubs=hubs,
            group_id="never-group",
            update_hub_assignment=False,
        ),
        "disabled": ensure_default_enrollment_group(
            data_dir, webhook_url=webhook.url, hubs=hubs, group_id="disabled-group"
        ),
    }
    record = load_enrollment_group(groups["disabled"].record_path).record
    record["provisioningStatus"] = "disabled"
    write_group_record(groups["disabled"].record_path, record)
    return groups


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("dps-emulator")
    run_dir = base / "run"
    tls = ensure_tls(base)
    webhook = ScriptedWebhook()
    webhook.server = serve_webhook(webhook)
    data_dir = base / "dps"
    groups = _groups(data_dir, webhook)
    fast = ["--retry-scale", "0.001", "--webhook-timeout", "0.5"]
    children = [start_dps_emulator(run_dir, data_dir, tls, extra_args=fast, wait=False)]
    for shape in SHAPES:
        shape_dir = base / f"dps-{shape}"
        shutil.copytree(groups_directory(data_dir), groups_directory(shape_dir))
        children.append(
            start_dps_emulator(
                run_dir,
                shape_dir,
                tls,
                name=f"dps-{shape}",
                extra_args=[*fast, "--x509-shape", shape],
                wait=False,
            )
        )
    try:
        for child in children:
            wait_ready(child)
        yield Setup(
            dps=children[0],
            tls=tls,
            webhook=webhook,
            groups=groups,
            shapes=dict(zip(SHAPES, children[1:], strict=True)),
            run_dir=run_dir,
        )
    finally:
        stop_children(children)
        webhook.server.shutdown()


def new_device(
    setup: Setup, tmp_path: Path, group: str = "migrate", **kw: Any
) -> DeviceCredentials:
    registration_id = f"dev-{uuid.uuid4().hex[:10]}"
    return issue_device(setup.groups[group], registration_id, tmp_path, **kw)


async def register(
    setup: Setup,
    device: DeviceCredentials,
    *,
    dps: Child | None = None,
    registration_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> RegistrationResult:
    return await register_device(
        host="127.0.0.1",
        port=(dps or setup.dps).info["port"],
        id_scope=ID_SCOPE,
        registration_id=registration_id or device.registration_id,
        cert_file=device.cert,
        key_file=device.key,
        ca_file=setup.tls.ca_cert,
        payload=payload,
        timeout=20,
    )


def device_context(setup: Setup, device: DeviceCredentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(setup.tls.ca_cert))
    context.load_cert_chain(device.cert, device.key)
    return context


def base_url(setup: Setup, registration_id: str, scope: str = ID_SCOPE) -> str:
    return f"{setup.dps.url}/{scope}/registrations/{registration_id}"


# --- the device API -----------------------------------------------------------------------


async def test_a_registration_is_accepted_with_202_then_assigned(setup, tmp_path):
    device = new_device(setup, tmp_path)
    context = device_context(setup, device)
    url = base_url(setup, device.registration_id)
    async with aiohttp.ClientSession() as session:
        async with session.put(
            f"{url}/register?{API}",
            json={"registrationId": device.registration_id, "payload": {"hello": 1}},
            ssl=context,
        ) as response:
            assert response.status == 202
            assert response.headers["content-type"] == "application/json; charset=utf-8"
            assert float(response.headers["retry-after"]) > 0
            accepted = await response.json()
        assert accepted["status"] == "assigning"
        operation_url = f"{url}/operations/{accepted['operationId']}?{API}"
        statuses = []
        for _ in range(100):
            async with session.get(operation_url, ssl=context) as response:
                assert response.headers["content-type"] == "application/json; charset=utf-8"
                statuses.append(response.status)
                body = await response.json()
            if response.status == 200:
                break
            assert response.status == 202
            assert body["status"] == "assigning"
            assert "retry-after" in response.headers
            await _pause()
        async with session.post(url + f"?{API}", json={}, ssl=context) as response:
            assert response.status == 200
            status_query = await response.json()
    assert statuses[-1] == 200
    assert body["operationId"] == accepted["operationId"]
    assert body["status"] == "assigned"
    state = body["registrationState"]
    assert state["registrationId"] == device.registration_id
    assert state["deviceId"] == device.registration_id
    assert state["assignedHub"] == EAST
    assert state["status"] == "assigned"
    assert state["substatus"] == "initialAssignment"
    assert state["payload"] == {"echo": device.registration_id}
    assert state["etag"]
    assert datetime.fromisoformat(state["createdDateTimeUtc"]) <= datetime.fromisoformat(
        state["lastUpdatedDateTimeUtc"]
    )
    assert state["x509"]["enrollmentGroupId"] == "devstack-x509"
    assert state["x509"]["certificateInfo"]["sha256Thumbprint"] == device.sha256_thumbprint
    assert f"CN={device.registration_id}" in state["x509"]["certificateInfo"]["subjectName"]
    assert status_query == state
    assert setup.webhook.calls_for(device.registration_id)[0].context["payload"] == {"hello": 1}


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "{scope}/registrations/{rid}/register?{api}", b"{not json", 400, 400004),
        ("PUT", "{scope}/registrations/{rid}/register?{api}", b"[1, 2]", 400, 400004),
        ("PUT", "{scope}/registrations/{rid}/register?{api}", b'{"payload": 3}', 400, 400004),
        ("PUT", "{scope}/registrations/{rid}/register", b"{}", 400, 400004),
        ("PUT", "wrong-scope/registrations/{rid}/register?{api}", b"{}", 404, 404201),
        ("GET", "{scope}/registrations/{rid}/operations/nope?{api}", None, 404, 404202),
        ("POST", "{scope}/registrations/{rid}?{api}", None, 404, 404201),
        ("PUT", "{scope}/registrations/someone-else/register?{api}", b"{}", 401, 401002),
        ("GET", "{scope}/nothing/here", None, 404, 404201),
        ("DELETE", "{scope}/registrations/{rid}/register?{api}", None, 405, 405000),
        ("PUT", "{scope}/registrations/{rid}/register?{api}", b" " * 100_000, 413, 413001),
    ],
)
async def test_every_answer_is_json_even_errors(setup, tmp_path, method, path, body, status, code):
    device = new_device(setup, tmp_path)
    target = path.format(scope=ID_SCOPE, rid=device.registration_id, api=API)
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{setup.dps.url}/{target}",
            data=body,
            headers={"content-type": "application/json"},
            ssl=device_context(setup, device),
        ) as response,
    ):
        assert response.status == status
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        problem = await response.json()
    assert problem["errorCode"] == code
    assert problem["message"]
    assert problem["trackingId"]
    assert setup.webhook.calls_for(device.registration_id) == []


async def test_a_device_without_a_client_certificate_is_refused(setup):
    context = ssl.create_default_context(cafile=str(setup.tls.ca_cert))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.put(
                f"{base_url(setup, 'no-cert-device')}/register?{API}",
                json={"registrationId": "no-cert-device"},
                ssl=context,
            ) as response:
                await response.read()
    assert setup.webhook.calls_for("no-cert-device") == []


async def test_a_certificate_from_an_unknown_ca_is_refused(setup, tmp_path):
    stranger = issue_device(TestCertificateAuthority(name="Unknown CA"), "stranger-1", tmp_path)
    with pytest.raises(DpsError) as refused:
        await register(setup, stranger)
    assert refused.value.status is None  # refused in the TLS handshake
    assert setup.webhook.calls_for("stranger-1") == []


async def test_a_common_name_other_than_the_registration_id_is_401(setup, tmp_path):
    device = new_device(setup, tmp_path)
    with pytest.raises(DpsError) as refused:
        await register(setup, device, registration_id="impostor-1")
    assert refused.value.status == 401
    assert refused.value.error_code == 401002
    assert "CN" in str(refused.value)
    assert setup.webhook.calls_for("impostor-1") == []


async def test_a_disabled_enrollment_group_refuses_its_devices(setup, tmp_path):
    device = new_device(setup, tmp_path, group="disabled")
    with pytest.raises(DpsError) as refused:
        await register(setup, device)
    assert refused.value.status == 401
    assert refused.value.error_code == 401002
    assert "disabled" in str(refused.value)
    assert setup.webhook.calls_for(device.registration_id) == []


async def test_registration_ids_are_case_insensitive(setup, tmp_path):
    device = new_device(setup, tmp_path)
    first = await register(setup, device)
    again = await register(setup, device, registration_id=device.registration_id.upper())
    assert first.status == again.status == "assigned"
    assert again.registration_state["registrationId"] == device.registration_id
    assert again.registration_state["deviceId"] == device.registration_id
    assert (
        again.registration_state["createdDateTimeUtc"]
        == (first.registration_state["createdDateTimeUtc"])
    )
    second_call = setup.webhook.calls_for(device.registration_id)[1]
    assert second_call.context["currentIotHubHostName"] == EAST


# --- webhook status semantics -------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        (Answer(body={"iotHubHostName": ""}), 400208, "CustomAllocationIotHubNotSpecified"),
        (Answer(body={"iotHubHostName": None}), 400208, "CustomAllocationIotHubNotSpecified"),
        (Answer(body={"initialTwin": {}}), 400208, "CustomAllocationIotHubNotSpecified"),
        (Answer(status=401, body={"title": "no key"}), 400209, "CustomAllocationUnauthorized"),
        (
            Answer(
                status=400,
                body={"title": "Unknown device", "detail": "no asset has serial SN-X"},
                content_type="application/problem+json",
            ),
            400207,
            "no asset has serial SN-X",
        ),
        (Answer(status=404, body="gone", content_type="text/plain"), 400207, "404: gone"),
        (Answer(status=409, body={"detail": "retired"}), 400207, "retired"),
        (Answer(body="not json", content_type="text/plain"), 400207, "no JSON"),
    ],
)
async def test_webhook_answers_map_to_dps_outcomes(setup, tmp_path, answer, code, message):
    device = new_device(setup, tmp_path)
    setup.webhook.script(device.registration_id, answer)
    result = await register(setup, device)
    assert result.status == "failed"
    state = result.registration_state
    assert state["status"] == "failed"
    assert state["errorCode"] == code
    assert message in state["errorMessage"]
    assert "assignedHub" not in state
    assert len(setup.webhook.calls_for(device.registration_id)) == 1


@pytest.mark.parametrize("statuses", [(429, 200), (503, 500, 429, 200), (502, 200)])
async def test_throttled_or_failing_webhooks_are_retried(setup, tmp_path, statuses):
    device = new_device(setup, tmp_path)
    answers = [Answer(status=s, body={"detail": "busy"}) for s in statuses[:-1]]
    setup.webhook.script(
        device.registration_id, *answers, Answer(body=default_answer(device.registration_id))
    )
    result = await register(setup, device)
    assert result.status == "assigned"
    assert result.assigned_hub == EAST
    assert len(setup.webhook.calls_for(device.registration_id)) == len(statuses)


async def test_a_webhook_timeout_is_retried(setup, tmp_path):
    device = new_device(setup, tmp_path)
    setup.webhook.script(
        device.registration_id,
        Answer(body=default_answer(device.registration_id), delay=1.0),
        Answer(body=default_answer(device.registration_id)),
    )
    result = await register(setup, device)
    assert result.status == "assigned"
    assert len(setup.webhook.calls_for(device.registration_id)) == 2


async def test_retries_stop_after_ten_tries(setup, tmp_path):
    device = new_device(setup, tmp_path)
    setup.webhook.script(device.registration_id, Answer(status=503, body={"detail": "down"}))
    result = await register(setup, device)
    assert result.status == "failed"
    assert result.registration_state["errorCode"] == 400207
    assert "10 tries" in result.registration_state["errorMessage"]
    assert "503" in result.registration_state["errorMessage"]
    assert len(setup.webhook.calls_for(device.registration_id)) == 10


async def test_a_hub_that_is_not_linked_fails_the_registration(setup, tmp_path):
    device = new_device(setup, tmp_path)
    setup.webhook.script(
        device.registration_id,
        Answer(body=default_answer(device.registration_id, hub="hub-elsewhere.azure-devices.net")),
    )
    result = await register(setup, device)
    assert result.status == "failed"
    assert result.registration_state["errorCode"] == 400207
    assert "not one of the linked hubs" in result.registration_state["errorMessage"]


# --- what the webhook receives ------------------------------------------------------------


async def test_the_webhook_request_is_shaped_like_dps(setup, tmp_path):
    device = new_device(setup, tmp_path)
    await register(setup, device)
    [call] = setup.webhook.calls_for(device.registration_id)
    assert call.path == f"/api/allocate?code={WEBHOOK_CODE}"
    assert call.content_type.startswith("application/json")
    assert set(call.body) == {"enrollmentGroup", "deviceRuntimeContext", "linkedHubs"}
    assert call.body["linkedHubs"] == [EAST, WEST]
    group = call.body["enrollmentGroup"]
    assert group["enrollmentGroupId"] == "devstack-x509"
    assert group["customAllocationDefinition"] == {
        "webhookUrl": setup.webhook.url.split("?")[0] + "?****",
        "apiVersion": "2021-10-01",
    }
    assert group["reprovisionPolicy"] == {"updateHubAssignment": True, "migrateDeviceData": True}
    assert group["allocationPolicy"] == "custom"
    assert group["iotHubs"] == [EAST, WEST]
    assert "BEGIN CERTIFICATE" not in json.dumps(group)
    assert group["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["subjectName"]
    context = call.context
    assert context["registrationId"] == device.registration_id
    assert "currentIotHubHostName" not in context
    assert "currentDeviceId" not in context
    assert "payload" not in context
    der = base64.b64decode(context["x509"]["clientCertificate"])
    expected = x509.load_pem_x509_certificate(device.cert.read_bytes())
    assert der == expected.public_bytes(serialization.Encoding.DER)
    assert AllocationRequest.model_validate(call.body).device_runtime_context.x509


@pytest.mark.parametrize("shape", SHAPES)
async def test_each_x509_shape_reaches_the_webhook_and_the_app_reads_it(setup, tmp_path, shape):
    device = new_device(setup, tmp_path, serial_number="SN-SHAPE-7")
    result = await register(setup, device, dps=setup.shapes[shape])
    assert result.status == "assigned"
    [call] = setup.webhook.calls_for(device.registration_id)
    sent = call.context["x509"]
    info_keys = {
        "subjectName",
        "sha1Thumbprint",
        "sha256Thumbprint",
        "issuerName",
        "notBeforeUtc",
        "notAfterUtc",
        "serialNumber",
        "version",
    }
    match shape:
        case "pem":
            assert sent["clientCertificate"] == device.cert.read_text()
        case "certificateInfo" | "clientCertificateInfo":
            assert set(sent) == {shape}
            assert set(sent[shape]) == info_keys
        case "flatInfo":
            assert set(sent) == info_keys
        case "none":
            assert sent == {}
    request = AllocationRequest.model_validate(call.body)
    identity = read_identity(
        request.device_runtime_context,
        request.enrollment,
        now=datetime.now(UTC),
        clock_skew=timedelta(minutes=5),
    )
    assert identity.common_name.value == device.registration_id
    if shape == "none":
        assert identity.subject_serial_number is None
    else:
        assert identity.subject_serial_number is not None
        assert identity.subject_serial_number.value == "SN-SHAPE-7"
        assert identity.sha256_thumbprint is not None
        assert identity.sha256_thumbprint.value == device.sha256_thumbprint


async def test_a_reregistration_tells_the_webhook_where_the_device_is(setup, tmp_path):
    device = new_device(setup, tmp_path)
    await register(setup, device)
    second = await register(setup, device, payload={"firmware": "2.0"})
    first_call, second_call = setup.webhook.calls_for(device.registration_id)
    assert "currentIotHubHostName" not in first_call.context
    assert second_call.context["currentIotHubHostName"] == EAST
    assert second_call.context["currentDeviceId"] == device.registration_id
    assert second_call.context["payload"] == {"firmware": "2.0"}
    assert second_call.body["linkedHubs"] == [EAST, WEST]
    assert second.registration_state["substatus"] == "initialAssignment"


async def test_never_reprovision_links_only_the_current_hub(setup, tmp_path):
    device = new_device(setup, tmp_path, group="never")
    rid = device.registration_id
    setup.webhook.script(
        rid,
        Answer(body=default_answer(rid, hub=EAST)),
        Answer(body=default_answer(rid, hub=WEST)),
        Answer(body=default_answer(rid, hub=EAST)),
    )
    first = await register(setup, device)
    moved = await register(setup, device)
    stayed = await register(setup, device)
    calls = setup.webhook.calls_for(rid)
    assert calls[0].body["linkedHubs"] == [EAST, WEST]
    assert calls[1].body["linkedHubs"] == [EAST]
    assert calls[2].body["linkedHubs"] == [EAST]
    assert calls[1].body["enrollmentGroup"]["reprovisionPolicy"]["updateHubAssignment"] is False
    assert first.assigned_hub == EAST
    assert moved.status == "failed"
    assert "not one of the linked hubs" in moved.registration_state["errorMessage"]
    assert stayed.status == "assigned"
    assert stayed.assigned_hub == EAST
    assert stayed.registration_state["substatus"] == "initialAssignment"


@pytest.mark.parametrize(
    ("group", "substatus"), [("migrate", "deviceDataMigrated"), ("reset", "deviceDataReset")]
)
async def test_a_hub_change_reports_the_reprovision_substatus(setup, tmp_path, group, substatus):
    device = new_device(setup, tmp_path, group=group)
    rid = device.registration_id
    setup.webhook.script(
        rid,
        Answer(body=default_answer(rid, hub=EAST)),
        Answer(body=default_answer(rid, hub=WEST)),
        Answer(body=default_answer(rid, hub=EAST)),
    )
    await register(setup, device)
    moved = await register(setup, device)
    back = await register(setup, device)
    assert moved.assigned_hub == WEST
    assert moved.registration_state["substatus"] == substatus
    assert back.assigned_hub == EAST
    assert back.registration_state["substatus"] == "reprovisionedToInitialAssignment"
    assert setup.webhook.calls_for(rid)[2].context["currentIotHubHostName"] == WEST


# --- Microsoft's Node device client -------------------------------------------------------


def test_microsofts_node_client_registers_and_reads_the_payload(setup, tmp_path):
    device = new_device(setup, tmp_path)
    done = register_with_node(setup.dps, device, setup.tls.ca_cert, payload={"model": "VA-45"})
    assert done.returncode == 0, done.stderr
    assert done.state is not None
    assert done.state["status"] == "assigned"
    assert done.state["assignedHub"] == EAST
    assert done.state["deviceId"] == device.registration_id
    assert done.state["payload"] == {"echo": device.registration_id}
    assert setup.webhook.calls_for(device.registration_id)[0].context["payload"] == {
        "model": "VA-45"
    }


def test_microsofts_node_client_reports_a_failed_registration(setup, tmp_path):
    device = new_device(setup, tmp_path)
    setup.webhook.script(device.registration_id, Answer(status=400, body={"detail": "nope"}))
    done = register_with_node(setup.dps, device, setup.tls.ca_cert)
    assert done.returncode == 1
    error = json.loads(done.stderr)
    assert error["result"]["status"] == "failed"
    assert error["result"]["registrationState"]["errorCode"] == 400207


def test_microsofts_node_client_gets_json_for_a_refusal(setup, tmp_path):
    device = new_device(setup, tmp_path)
    done = register_with_node(setup.dps, device, setup.tls.ca_cert, registration_id="other-id")
    assert done.returncode == 1
    error = json.loads(done.stderr)
    assert error["statusCode"] == 401
    assert json.loads(error["responseBody"])["errorCode"] == 401002


@pytest.mark.parametrize(("answer", "exit_code"), [(None, 0), (Answer(status=400), 1)])
def test_the_device_client_cli_prints_the_registration_state(setup, tmp_path, answer, exit_code):
    device = new_device(setup, tmp_path)
    if answer is not None:
        setup.webhook.script(device.registration_id, answer)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.dps_device_client",
            "--registration-id",
            device.registration_id,
            "--cert",
            str(device.cert),
            "--key",
            str(device.key),
            "--stack",
            str(setup.dps.ready_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == exit_code, done.stderr
    state = json.loads(done.stdout)
    assert state["registrationId"] == device.registration_id
    assert state["status"] == ("assigned" if exit_code == 0 else "failed")


# --- enrollment group and hubs files ------------------------------------------------------


def test_the_default_group_is_created_once_then_only_refreshed(tmp_path):
    first = ensure_default_enrollment_group(
        tmp_path, webhook_url="http://127.0.0.1:1/api/allocate?code=a", hubs=[EAST]
    )
    ca_pem = first.ca_cert.read_bytes()
    group = load_enrollment_group(first.record_path)
    assert group.group_id == "devstack-x509"
    assert group.webhook_url.endswith("code=a")
    assert group.iot_hubs == (EAST,)
    assert group.update_hub_assignment
    assert group.migrate_device_data
    assert first.ca_key.stat().st_mode & 0o077 == 0

    second = ensure_default_enrollment_group(
        tmp_path,
        webhook_url="http://127.0.0.1:2/api/allocate?code=b",
        hubs=[EAST, WEST],
        migrate_device_data=False,
    )
    assert second == first
    assert second.ca_cert.read_bytes() == ca_pem
    refreshed = load_enrollment_group(second.record_path)
    assert refreshed.webhook_url.endswith("code=b")
    assert refreshed.iot_hubs == (EAST, WEST)
    assert refreshed.migrate_device_data is True
    assert refreshed.record["createdDateTimeUtc"] == group.record["createdDateTimeUtc"]
    leaf = TestCertificateAuthority.from_files(second.ca_cert, second.ca_key).issue_device("d-1")
    assert refreshed.signed(leaf.certificate) is not None


@pytest.mark.parametrize(
    ("edit", "field_name"),
    [
        (lambda r: r.pop("enrollmentGroupId"), "enrollmentGroupId"),
        (
            lambda r: r["attestation"]["x509"]["signingCertificates"]["primary"].update(
                certificate="not a PEM"
            ),
            "attestation.x509.signingCertificates.primary.certificate",
        ),
        (lambda r: r.update(allocationPolicy="hashed"), "allocationPolicy"),
        (lambda r: r.update(provisioningStatus="paused"), "provisioningStatus"),
        (
            lambda r: r["reprovisionPolicy"].update(migrateDeviceData="yes"),
            "reprovisionPolicy.migrateDeviceData",
        ),
        (
            lambda r: r["customAllocationDefinition"].update(webhookUrl="ftp://x"),
            "customAllocationDefinition.webhookUrl",
        ),
        (lambda r: r.update(iotHubs="hub"), "iotHubs"),
    ],
)
def test_a_bad_group_file_names_the_file_and_the_field(tmp_path, edit, field_name):
    files = ensure_default_enrollment_group(tmp_path, webhook_url="http://h/x", hubs=[EAST])
    record = json.loads(files.record_path.read_text())
    edit(record)
    files.record_path.write_text(json.dumps(record))
    with pytest.raises(EnrollmentGroupError) as error:
        load_enrollment_groups(groups_directory(tmp_path))
    assert str(files.record_path) in str(error.value)
    assert f": {field_name}: " in str(error.value)


def test_the_emulator_refuses_to_start_with_a_bad_group_file(setup, tmp_path):
    broken = groups_directory(tmp_path) / "broken.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"enrollmentGroupId": "broken", "attestation": {"type": "tpm"}}')
    with pytest.raises(ChildFailed) as failed:
        start_dps_emulator(setup.run_dir, tmp_path, setup.tls, name="dps-broken")
    assert "exited with code 2" in str(failed.value)
    assert f"enrollment group file {broken}: attestation.type" in str(failed.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "is not JSON"),
        ("[]", "must be an object of hub host name -> hub"),
        (json.dumps({EAST: "HostName=x"}), f"{EAST}: must be an object"),
        (
            json.dumps({EAST: {"connectionString": "HostName=h;SharedAccessKeyName=o"}}),
            f"{EAST}.connectionString: missing SharedAccessKey",
        ),
    ],
)
def test_a_bad_hubs_file_is_explained(tmp_path, content, problem):
    path = tmp_path / "hubs.json"
    path.write_text(content)
    with pytest.raises(HubsFileError) as error:
        load_hubs_file(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_the_iothub_emulators_ready_file_works_as_a_hubs_file(tmp_path):
    path = tmp_path / "ready.json"
    connection = "HostName=127.0.0.1:1;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"
    path.write_text(json.dumps({"port": 1, "hubs": {EAST: {"connectionString": connection}}}))
    hubs = load_hubs_file(path)
    assert [hub.name for hub in hubs.values()] == [EAST]
    assert hubs[EAST].connection_string == connection
