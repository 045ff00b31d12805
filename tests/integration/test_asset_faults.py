"""Fault injection in the reference asset service, and surviving SIGKILL, over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready
from tests.integration.asset_service_fixtures import (
    ASSET_SERVICE_MODULE,
    READ_ONLY_KEY,
    REPO_ROOT,
    WRITE_KEY,
    start_asset_service,
)

PROBLEM_JSON = "application/problem+json"
SEED = 7
CLEAR = {"down": False, "latencyMs": 0, "errorRate": 0.0}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    base = tmp_path_factory.mktemp("asset-faults")
    child = start_asset_service(
        base / "run", base / "data", name="asset-faults", extra_args=["--fault-seed", str(SEED)]
    )
    try:
        yield child
    finally:
        stop_children([child])


@pytest.fixture
def http(service: Child) -> Iterator[httpx.Client]:
    """A read-write client; the faults are cleared after each test, whatever it left."""
    with httpx.Client(base_url=service.url, headers={"x-api-key": WRITE_KEY}, timeout=10) as c:
        yield c
        assert c.post("/devstack/faults", json={}).status_code == 200


def set_faults(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/devstack/faults", json=body)
    assert response.status_code == 200, response.text
    current: dict[str, Any] = response.json()
    return current


def asset_body() -> dict[str, Any]:
    return {
        "serialNumber": f"SN-F-{uuid.uuid4().hex[:12]}",
        "assetType": "temperature-sensor",
        "location": f"test/{uuid.uuid4().hex[:8]}/line-1",
        "attributes": {"manufacturer": "Contoso", "model": "T-1"},
    }


def new_asset_id() -> str:
    return f"F-{uuid.uuid4().hex[:12]}"


def assert_unavailable(response: httpx.Response, fault: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["fault"] == fault
    assert "fault injection" in problem["detail"]


def assert_invalid(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["field"] == field
    assert problem["detail"].startswith(field)


# --- the setting ---------------------------------------------------------------------------


def test_no_faults_at_start_and_get_shows_what_was_set(http: httpx.Client) -> None:
    assert http.get("/devstack/faults").json() == CLEAR
    body = {"down": True, "latencyMs": 25, "errorRate": 0.5}
    assert set_faults(http, **body) == body
    assert http.get("/devstack/faults").json() == body


def test_post_replaces_the_whole_setting_and_empty_body_clears(http: httpx.Client) -> None:
    set_faults(http, down=True, latencyMs=10, errorRate=1)
    assert set_faults(http, errorRate=0.25) == {"down": False, "latencyMs": 0, "errorRate": 0.25}
    assert set_faults(http) == CLEAR
    assert http.get("/devstack/faults").json() == CLEAR
    assert http.get("/assets/AST-1001").status_code == 200


def test_faults_need_a_key_and_writes_need_a_read_write_key(service: Child) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as anonymous:
        assert anonymous.get("/devstack/faults").status_code == 401
        refused = anonymous.post("/devstack/faults", json={"down": True})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        read_only = {"x-api-key": READ_ONLY_KEY}
        assert anonymous.get("/devstack/faults", headers=read_only).status_code == 200
        forbidden = anonymous.post("/devstack/faults", json={"down": True}, headers=read_only)
        assert forbidden.status_code == 403
        wrong = anonymous.post("/devstack/faults", json={"down": True}, headers={"x-api-key": "x"})
        assert wrong.status_code == 401
        # None of the refused writes took effect.
        assert anonymous.get("/devstack/faults", headers=read_only).json() == CLEAR
        assert anonymous.get("/assets/AST-1001", headers=read_only).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"down": "yes"}, "down"),
        ({"down": 1}, "down"),
        ({"latencyMs": -1}, "latencyMs"),
        ({"latencyMs": 60_001}, "latencyMs"),
        ({"latencyMs": 1.5}, "latencyMs"),
        ({"latencyMs": True}, "latencyMs"),
        ({"latencyMs": "100"}, "latencyMs"),
        ({"errorRate": 1.01}, "errorRate"),
        ({"errorRate": -0.1}, "errorRate"),
        ({"errorRate": "0.5"}, "errorRate"),
        ({"errorRate": False}, "errorRate"),
        ({"errorRate": None}, "errorRate"),
        ({"latency": 5}, "latency"),
        ([], "body"),
        ("down", "body"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(http: httpx.Client, body: Any, field: str) -> None:
    set_faults(http, latencyMs=1)
    assert_invalid(http.post("/devstack/faults", json=body), field)
    assert http.get("/devstack/faults").json() == {"down": False, "latencyMs": 1, "errorRate": 0}


def test_bounds_are_accepted(http: httpx.Client) -> None:
    assert set_faults(http, latencyMs=60_000, errorRate=0) == {
        "down": False,
        "latencyMs": 60_000,
        "errorRate": 0.0,
    }
    assert set_faults(http, errorRate=1)["errorRate"] == 1.0


def test_malformed_json_and_wrong_content_type_are_refused(http: httpx.Client) -> None:
    bad = http.post(
        "/devstack/faults", content=b"{down", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith(PROBLEM_JSON)
    text = http.post("/devstack/faults", content=b"{}", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    not_allowed = http.delete("/devstack/faults")
    assert not_allowed.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in not_allowed.headers["allow"].split(",")}


# --- the effects -----------------------------------------------------------------------------


def test_down_answers_every_asset_call_503_and_changes_nothing(http: httpx.Client) -> None:
    asset_id = new_asset_id()
    set_faults(http, down=True)
    assert_unavailable(http.get("/assets"), "down")
    assert_unavailable(http.get("/assets/AST-1001"), "down")
    assert_unavailable(http.put(f"/assets/{asset_id}", json=asset_body()), "down")
    assert_unavailable(http.get("/assets/AST-1001/history"), "down")
    link = {"deviceId": "dev-down", "registrationId": "dev-down", "thumbprint": "AB" * 20}
    assert_unavailable(http.post("/assets/AST-1002/devices", json=link), "down")
    # Even an unknown route or an anonymous caller under /assets: a down service checks nothing.
    assert_unavailable(http.get("/assets/AST-1001/nothing-here"), "down")
    with httpx.Client(base_url=str(http.base_url), timeout=10) as anonymous:
        assert_unavailable(anonymous.get("/assets/AST-1001"), "down")

    set_faults(http)
    assert http.get(f"/assets/{asset_id}").status_code == 404
    assert http.get("/assets/AST-1002").json()["deviceId"] is None


def test_head_under_down_is_503_without_a_body(http: httpx.Client) -> None:
    set_faults(http, down=True)
    response = http.head("/assets/AST-1001")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.content == b""


def test_an_injected_error_changes_nothing(http: httpx.Client) -> None:
    asset_id = new_asset_id()
    set_faults(http, errorRate=1)
    assert_unavailable(http.put(f"/assets/{asset_id}", json=asset_body()), "errorRate")
    patch = http.patch(
        "/assets/AST-1003",
        json={"location": "elsewhere/plant/line"},
        headers={"if-match": '"1"', "content-type": "application/merge-patch+json"},
    )
    assert_unavailable(patch, "errorRate")

    set_faults(http)
    assert http.get(f"/assets/{asset_id}").status_code == 404
    untouched = http.get("/assets/AST-1003").json()
    assert untouched["version"] == 1
    assert untouched["location"] != "elsewhere/plant/line"
    created = http.put(f"/assets/{asset_id}", json=asset_body())
    assert created.status_code == 201, created.text


def test_error_rate_is_roughly_honoured_and_reproducible_with_a_seed(http: httpx.Client) -> None:
    def outcomes() -> list[int]:
        set_faults(http, errorRate=0.25)  # restarts the seeded random sequence
        return [http.get("/assets", params={"limit": 1}).status_code for _ in range(200)]

    first = outcomes()
    assert set(first) == {200, 503}
    failed = first.count(503)
    assert 25 <= failed <= 75, failed  # expected 50; the bounds are more than 4 sigma wide
    assert outcomes() == first


def test_error_rate_zero_and_one_are_exact(http: httpx.Client) -> None:
    set_faults(http, errorRate=1)
    assert {http.get("/assets/AST-1001").status_code for _ in range(30)} == {503}
    set_faults(http, errorRate=0)
    assert {http.get("/assets/AST-1001").status_code for _ in range(30)} == {200}


def test_latency_delays_asset_calls(http: httpx.Client) -> None:
    set_faults(http, latencyMs=300)
    started = time.monotonic()
    response = http.get("/assets/AST-1001")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.29, elapsed


def test_latency_comes_before_the_work(http: httpx.Client) -> None:
    """A caller that gives up during the delay has changed nothing: the work never started."""
    asset_id = new_asset_id()
    set_faults(http, latencyMs=1500)
    with pytest.raises(httpx.ReadTimeout):
        http.put(f"/assets/{asset_id}", json=asset_body(), timeout=0.5)
    set_faults(http)
    time.sleep(1.5)  # the abandoned request would have run by now
    assert http.get(f"/assets/{asset_id}").status_code == 404


def test_healthz_and_devstack_routes_are_never_affected(http: httpx.Client) -> None:
    set_faults(http, down=True, errorRate=1, latencyMs=10_000)
    quick = httpx.Timeout(3)
    health = http.get("/healthz", timeout=quick)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert http.get("/devstack/events", timeout=quick).status_code == 200
    assert http.get("/devstack/faults", timeout=quick).json()["down"] is True
    with pytest.raises(httpx.ReadTimeout):
        http.get("/assets/AST-1001", timeout=1)
    assert http.post("/devstack/faults", json={}, timeout=quick).status_code == 200
    assert http.get("/assets/AST-1001", timeout=quick).status_code == 200


def test_a_path_that_only_starts_like_assets_is_not_faulted(http: httpx.Client) -> None:
    set_faults(http, down=True)
    response = http.get("/assetsx")
    assert response.status_code == 404
    assert "fault" not in response.json()


# --- command line ----------------------------------------------------------------------------


def test_faults_can_be_set_at_start(tmp_path: Path) -> None:
    child = start_asset_service(
        tmp_path / "run",
        tmp_path / "data",
        name="asset-faulty",
        extra_args=["--fault-down", "--fault-latency-ms", "20", "--fault-error-rate", "0.5"],
    )
    try:
        with httpx.Client(base_url=child.url, headers={"x-api-key": WRITE_KEY}) as c:
            assert c.get("/devstack/faults").json() == {
                "down": True,
                "latencyMs": 20,
                "errorRate": 0.5,
            }
            assert_unavailable(c.get("/assets/AST-1001"), "down")
            assert c.get("/healthz").status_code == 200
    finally:
        stop_children([child])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault-error-rate", "1.5"], "--fault-error-rate"),
        (["--fault-error-rate", "lots"], "--fault-error-rate"),
        (["--fault-latency-ms", "-1"], "--fault-latency-ms"),
        (["--fault-latency-ms", "60001"], "--fault-latency-ms"),
        (["--fault-seed", "x"], "--fault-seed"),
    ],
)
def test_bad_fault_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", ASSET_SERVICE_MODULE, "--data-dir", str(tmp_path), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "assets.sqlite3").exists()


# --- crash and restart -----------------------------------------------------------------------


def test_sigkill_then_restart_on_the_same_port_and_data_dir_serves_the_same_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    first = start_asset_service(tmp_path / "run", data_dir, name="asset-chaos")
    port = first.info["port"]
    asset_id = new_asset_id()
    try:
        with httpx.Client(base_url=first.url, headers={"x-api-key": WRITE_KEY}) as c:
            assert c.put(f"/assets/{asset_id}", json=asset_body()).status_code == 201
            link = {"deviceId": "dev-chaos", "registrationId": "dev-chaos", "thumbprint": "CD" * 20}
            assert c.post(f"/assets/{asset_id}/devices", json=link).status_code == 201
            before = c.get(f"/assets/{asset_id}").json()
            history_before = c.get(f"/assets/{asset_id}/history").json()
            everything_before = c.get("/assets", params={"limit": 1000}).json()["items"]
    finally:
        first.process.kill()  # SIGKILL: no shutdown code runs
        first.process.wait()
    assert first.process.returncode == -9

    # Straight away, on the same port: what a chaos test restarting a dependency does.
    second = _start_on_port(tmp_path / "run", data_dir, port)
    try:
        assert second.info["port"] == port
        assert second.url == first.url
        with httpx.Client(base_url=second.url, headers={"x-api-key": WRITE_KEY}) as c:
            after = c.get(f"/assets/{asset_id}")
            assert after.status_code == 200
            assert after.json() == before
            assert after.headers["etag"] == f'"{before["version"]}"'
            assert c.get(f"/assets/{asset_id}/history").json() == history_before
            assert c.get("/assets", params={"limit": 1000}).json()["items"] == everything_before
            assert c.get("/devstack/faults").json() == CLEAR
    finally:
        stop_children([second])


def _start_on_port(run_dir: Path, data_dir: Path, port: int) -> Child:
    child = start_child(
        "asset-chaos-again",
        ASSET_SERVICE_MODULE,
        ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        + ["--api-key", WRITE_KEY],
        run_dir=run_dir,
        cwd=REPO_ROOT,
    )
    return wait_ready(child)
