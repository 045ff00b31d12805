"""Whatever a registration carries, what it leaves on a queue fits one queue message."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from allocation import emissions
from allocation.attestation import read_identity
from allocation.contract import MAX_BODY_BYTES
from allocation.decision import decide_fallback
from allocation.errors import ReplacementRefused, UnknownDevice
from allocation.http_endpoint import parse_request
from resilience.queue_port import MAX_MESSAGE_BYTES

NOW = datetime(2026, 12, 7, tzinfo=UTC)
_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=63)
HUBS = st.lists(st.lists(_LABEL, min_size=1, max_size=4).map(".".join), min_size=1, max_size=1000)
PAYLOADS = st.dictionaries(st.text(max_size=3000), st.text(max_size=200), max_size=60)


def encoded_size(message: dict[str, Any]) -> int:
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return len(base64.b64encode(text.encode()))


def request_within_dps_limits(hubs, payload, reason):
    body = {
        "enrollmentGroup": {"enrollmentGroupId": "g" * 128},
        "deviceRuntimeContext": {
            "registrationId": "dev-1",
            "x509": {},
            "payload": {**payload, "replacementFor": {"deviceId": "old", "reason": reason}},
        },
        "linkedHubs": hubs,
    }
    raw = json.dumps(body).encode()
    return parse_request(raw) if len(raw) <= MAX_BODY_BYTES else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hubs=HUBS, payload=PAYLOADS, reason=st.text(max_size=20_000))
@example(  # near DPS's 96 KB: long hub names, long payload keys, a long claimed reason
    hubs=[f"{n:03d}" + "h" * 60 for n in range(600)],
    payload={f"{n:02d}" + "k" * 1000: "" for n in range(40)},
    reason="r" * 5000,
)
def test_refusals_and_fallbacks_always_fit_a_queue_message(demo_policy, hubs, payload, reason):
    request = request_within_dps_limits(hubs, payload, reason)
    if request is None:
        return
    for error in (UnknownDevice("no asset " + reason), ReplacementRefused(reason)):
        emitted = emissions.refused(request, error, "req-1")
        for letter in emitted.dead_letters:
            assert encoded_size(letter.to_message()) <= MAX_MESSAGE_BYTES
    identity = read_identity(
        request.device_runtime_context, request.enrollment, now=NOW, clock_skew=NOW - NOW
    )
    decision = decide_fallback(
        request=request,
        identity=identity,
        policy=demo_policy,
        known_location=None,
        pending_since=NOW,
    )
    emitted = emissions.fallback(request, decision, "timed out " + reason, "req-1")
    for message in emitted.reconciliation:
        assert encoded_size(message.to_message()) <= MAX_MESSAGE_BYTES
