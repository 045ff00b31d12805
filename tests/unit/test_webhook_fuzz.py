"""The webhook under property-based fuzzing, in process over fakes of our ports.

Never a 5xx, never an answer that holds another device's id, its asset or approved serial, a
key, or internals; every refusal is problem+json. (The same properties through the dev host
over HTTP: tests/integration/test_webhook_fuzz_http.py.)
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation.http_endpoint import answer_allocation
from allocation.service import AllocationService
from asset_client import Asset, AssetRequestRejected
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import RecordingOutbox
from tests.webhook_fuzz import (
    APPROVED_SERIAL,
    VICTIM_ASSET,
    VICTIM_DEVICE,
    VICTIM_SERIAL,
    Certificates,
    allocation_bodies,
    leaks,
)

CERTIFICATES = Certificates.make()


def victim() -> Asset:
    document = make_asset(
        VICTIM_ASSET,
        serial=VICTIM_SERIAL,
        device_id=VICTIM_DEVICE,
        status="pendingReplacement",
        provisioning_status="provisioned",
    ).model_dump(by_alias=True)
    document["replacement"] = {
        "oldDeviceId": VICTIM_DEVICE,
        "approvedSerial": APPROVED_SERIAL,
        "reason": "technician's words",
        "approvedAt": datetime.now(UTC),
    }
    return Asset.model_validate(document)


class LeakyRepository(FakeAssetRepository):
    """An asset system whose errors carry key material and another device's id."""

    async def find_by_serial_number(self, serial_number: str) -> list[Asset]:
        raise AssetRequestRejected(
            f"asset API answered 400: SharedAccessKey=abc; {VICTIM_DEVICE} {APPROVED_SERIAL}",
            400,
        )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=allocation_bodies(CERTIFICATES), leaky=st.booleans())
def test_no_hostile_request_gets_a_5xx_or_a_leak(demo_policy, body: bytes, leaky: bool) -> None:
    repository = LeakyRepository if leaky else FakeAssetRepository
    repo = repository(victim(), make_asset("AST-1001", serial="SN-1001"))
    recorded = RecordingOutbox()
    service = AllocationService(
        assets=repo, policy=demo_policy, asset_api_public_url="http://a", outbox=recorded.outbox
    )
    answer = asyncio.run(answer_allocation(body, request_id="fuzz", service=service))
    text = answer.body.decode("utf-8", "replace")
    assert answer.status < 500 or (leaky and answer.status == 502), (answer.status, text)
    assert leaks(text) == [], (answer.status, text)
    assert leaks(json.dumps(answer.headers)) == []
    if answer.status != 200:
        assert answer.content_type == "application/problem+json"
        assert json.loads(answer.body)["status"] == answer.status
    # The victim's device and asset are never handed to anybody else.
    assert VICTIM_DEVICE not in {link.device_id for _, link in repo.links}
    assert repo.assets[VICTIM_ASSET].device_id == VICTIM_DEVICE
