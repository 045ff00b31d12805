"""The dev functions host, run as the integration stack runs it, writes no key to its log: a
refused event that quotes a connection string is logged with the key replaced by ***."""

from __future__ import annotations

import time
import uuid

import httpx

from devstack.processes import Child
from tests.integration.conftest import RunningStack

KEY = "c2VjcmV0LWtleS1ub3QtdG8tYmUtbG9nZ2Vk"


def _log_once_it_has(child: Child, text: str, timeout: float = 10.0) -> str:
    """The child's log, as soon as it contains `text` (or as it is when the time is up)."""
    assert child.log_path is not None
    deadline = time.monotonic() + timeout
    log = child.log_path.read_text(errors="replace")
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = child.log_path.read_text(errors="replace")
    return log


def test_a_key_quoted_by_a_refused_event_is_redacted_in_the_host_log(stack: RunningStack):
    marker = uuid.uuid4().hex
    event = {
        "id": marker,
        "subject": "/assets/not-this-one",
        "eventType": "AssetManagement.AssetChanged",
        "eventTime": "2026-11-26T00:00:00Z",
        "dataVersion": "1.0",
        "data": {"assetId": f"SharedAccessKey={KEY}", "version": 1},
    }
    response = httpx.post(
        f"{stack.host.url}/runtime/webhooks/eventgrid",
        params={"functionName": "asset_changed"},
        json=[event],
        headers={"aeg-event-type": "Notification"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    log = _log_once_it_has(stack.host, "asset event refused")
    refused = [line for line in log.splitlines() if "asset event refused" in line]
    assert refused, log[-2000:]
    assert any("SharedAccessKey=***" in line for line in refused), refused
    assert KEY not in log
