"""Twin -> asset over fakes of our ports, with hostile devices and forged events: what is written,
what is refused and audited, what is dead-lettered, and what never reaches a log or the trail."""

import asyncio
import json
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asset_client import AssetUnavailable
from audit import ListAudit
from observability import DeviceLog
from resilience.outbox import Outbox
from sync.constraints import ValueConstraint
from sync.device_sync_service import TwinToAssetSync
from sync.events import RawTwinEvent, twin_change_from_record
from sync.handlers import handle_twin_batch
from sync.ownership import DEVICE_REPORTED
from tests.unit.fakes import FakeAssetRepository, make_asset
from tests.unit.outbox_fakes import ListQueue

MARKER = "Zq7\u2603"
SYSTEM = {"message-source": "twinChangeEvents", "enqueuedtime": "2026-11-26T05:00:00.1234567Z"}


def constraint_of(field: str) -> ValueConstraint:
    constraint = DEVICE_REPORTED[field].constraint
    assert constraint is not None
    return constraint


def event(device_id, reported, seq=1, system=None):
    return RawTwinEvent(
        body=json.dumps({"version": seq, "properties": {"reported": reported}}).encode(),
        properties={
            "hubName": "hub-us-east",
            "deviceId": device_id,
            "opType": "updateTwin",
            "iothub-message-schema": "twinChangeNotification",
            "operationTimestamp": "2026-11-26T05:00:00Z",
        },
        iothub_metadata={**SYSTEM, "connection-device-id": device_id} if system is None else system,
        sequence_number=seq,
    )


class Rig:
    def __init__(self, policy, assets=None):
        self.assets = assets or FakeAssetRepository(
            make_asset("AST-1", device_id="dev-1", serial="SN-1", asset_type="edge-gateway"),
            make_asset("AST-2", device_id="dev-2", serial="SN-2"),
        )
        self.queue = ListQueue()
        self.dead = ListQueue()
        self.audit = ListAudit()
        self.sync = TwinToAssetSync(
            assets=self.assets,
            policy=policy,
            outbox=Outbox(reconciliation=self.queue, dead_letters=self.dead, audit=self.audit),
        )

    def attributes(self, asset_id):
        return self.assets.assets[asset_id].attributes


def log_text(caplog):
    return "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)


async def test_a_hostile_value_is_refused_audited_and_the_rest_of_the_batch_written(
    demo_policy, caplog
):
    rig = Rig(demo_policy)
    with caplog.at_level(logging.INFO, logger="sync"):
        outcome = await handle_twin_batch(
            rig.sync,
            [
                event("dev-1", {"firmwareVersion": "5.0.1", "health": MARKER + "\x1b[2J" * 50}),
                event("dev-2", {"health": "degraded"}),
            ],
            "req-7",
        )
    assert rig.attributes("AST-1") == {"firmwareVersion": "5.0.1"}, "the valid field still counts"
    assert rig.attributes("AST-2") == {"health": "degraded"}, "the other device goes on"
    assert outcome.results == {"echo": 0, "written": 2}
    assert outcome.recorded == 0
    assert rig.queue.messages == rig.dead.messages == [], "retrying cannot fix a bad value"

    [refusal] = [e for e in rig.audit.entries if e.action == "sync.refused"]
    assert (refusal.actor, refusal.outcome) == ("twin-sync", "invalid reported value")
    assert (refusal.device_id, refusal.asset_id, refusal.request_id) == ("dev-1", "AST-1", "req-7")
    assert refusal.details == {
        "field": "health",
        "rule": constraint_of("health").description,
        "violation": "length outside 1-32",
    }
    assert MARKER not in refusal.model_dump_json()

    [line] = [r for r in caplog.records if getattr(r, "audit", None) == "reportInvalid"]
    assert line.levelno == logging.WARNING
    assert (line.deviceId, line.registrationId, line.assetId) == ("dev-1", "dev-1", "AST-1")
    assert (line.field, line.violation) == ("health", "length outside 1-32")
    assert MARKER not in log_text(caplog)


async def test_a_serial_mismatch_is_logged_without_the_reported_serial(demo_policy, caplog):
    rig = Rig(demo_policy)
    with caplog.at_level(logging.INFO, logger="sync"):
        await handle_twin_batch(rig.sync, [event("dev-2", {"serialNumber": "SN-ZZZ-Q7Q"})], "r")
    [mismatch] = [r for r in caplog.records if getattr(r, "audit", None) == "serialMismatch"]
    assert (mismatch.deviceId, mismatch.assetId) == ("dev-2", "AST-2")
    assert "SN-ZZZ-Q7Q" not in log_text(caplog)


async def test_a_refusal_is_audited_once_even_when_the_write_is_retried(demo_policy):
    class Busy(FakeAssetRepository):
        def __init__(self, *assets):
            super().__init__(*assets)
            self.races = 2

        async def patch_asset(self, asset_id, patch, *, if_match):
            if self.races:
                self.races -= 1
                self.update(asset_id, location=f"us-east/edit-{self.races}")
            return await super().patch_asset(asset_id, patch, if_match=if_match)

    rig = Rig(demo_policy, Busy(make_asset("AST-1", device_id="dev-1")))
    await handle_twin_batch(rig.sync, [event("dev-1", {"firmwareVersion": "6", "health": ""})], "r")
    assert rig.attributes("AST-1") == {"firmwareVersion": "6"}
    assert [e.action for e in rig.audit.entries] == ["sync.refused", "sync.assetWritten"]


async def test_a_forged_event_is_dead_lettered_and_the_batch_goes_on(demo_policy, caplog):
    rig = Rig(demo_policy)
    forged = event("dev-1", {"firmwareVersion": "6.6.6"}, system={})
    spoofed = event(
        "dev-1", {"health": "pwned"}, system={**SYSTEM, "connection-device-id": "dev-2"}
    )
    with caplog.at_level(logging.INFO, logger="sync"):
        outcome = await handle_twin_batch(
            rig.sync, [forged, spoofed, event("dev-2", {"health": "ok"})], "req-9"
        )
    assert rig.attributes("AST-1") == {}, "nothing of a forged event is applied"
    assert rig.attributes("AST-2") == {"health": "ok"}
    assert outcome.recorded == 2
    assert rig.queue.messages == [], "never retried"
    assert [(m["kind"], m["reason"], m["replayable"]) for m in rig.dead.messages] == [
        ("twinChange", "invalid event", False)
    ] * 2
    assert "iothub-message-source" in rig.dead.messages[0]["detail"]
    assert "iothub-connection-device-id" in rig.dead.messages[1]["detail"]
    assert rig.dead.messages[0]["request"]["systemProperties"] == {}
    refused = [r for r in caplog.records if r.getMessage().startswith("twin change event refused")]
    assert len(refused) == 2
    assert "dev-2" not in " ".join(r.detail for r in refused)


async def test_a_transient_failure_is_recorded_with_what_a_replay_needs(demo_policy):
    class Down(FakeAssetRepository):
        down = True

        async def find_by_device_id(self, device_id):
            if self.down:
                raise AssetUnavailable("asset API timed out")
            return await super().find_by_device_id(device_id)

    assets = Down(make_asset("AST-1", device_id="dev-1"))
    rig = Rig(demo_policy, assets)
    outcome = await handle_twin_batch(rig.sync, [event("dev-1", {"health": "ok"}, seq=12)], "r")
    assert outcome.recorded == 1
    [message] = rig.queue.messages
    recorded = json.loads(json.dumps(message["event"]))
    assert recorded["systemProperties"] == {
        "iothub-message-source": "twinChangeEvents",
        "iothub-enqueuedtime": "2026-11-26T05:00:00.1234567Z",
        "iothub-connection-device-id": "dev-1",
    }
    # What the reconciler does with it, once the asset system is back.
    assets.down = False
    change = twin_change_from_record(recorded)
    log = DeviceLog(logging.getLogger("test"), request_id="r2")
    assert await rig.sync.apply(change, log) == "written"
    assert rig.attributes("AST-1") == {"health": "ok"}
    assert change.sequence_number == 12


def _json_value(children):
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    )


hostile = st.one_of(
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**70), 2**70),
            st.floats(),
            st.text(st.characters(codec="utf-8"), max_size=30).map(lambda t: MARKER + t),
        ),
        _json_value,
        max_leaves=20,
    ),
    st.integers(0, 100_000).map(lambda n: MARKER + "x" * n),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reported=st.dictionaries(st.sampled_from(sorted(DEVICE_REPORTED)), hostile, min_size=1))
def test_no_hostile_report_fails_the_batch_or_leaks_into_the_trail(demo_policy, reported):
    rig = Rig(demo_policy)
    outcome = asyncio.run(
        handle_twin_batch(
            rig.sync, [event("dev-1", reported), event("dev-2", {"health": "fine"}, seq=2)], "r"
        )
    )
    assert rig.attributes("AST-2") == {"health": "fine"}
    assert outcome.recorded == 0
    assert rig.queue.messages == rig.dead.messages == []
    for name, value in rig.attributes("AST-1").items():
        assert value is None or constraint_of(name).violation(value) is None
    for entry in rig.audit.entries:
        assert MARKER not in entry.model_dump_json()
    invalid = {
        e.details["field"] for e in rig.audit.entries if e.outcome == "invalid reported value"
    }
    broken = {
        name
        for name, value in reported.items()
        if value is not None and constraint_of(name).violation(value) is not None
    }
    assert invalid == broken


async def test_a_body_nested_past_the_parser_or_with_an_endless_number_is_dead_lettered(
    demo_policy,
):
    rig = Rig(demo_policy)
    good = event("dev-2", {"health": "ok"})
    deep = RawTwinEvent(
        b'{"properties": {"reported": {"configuration": '
        + b"[" * 200_000
        + b"]" * 200_000
        + b"}}}",
        event("dev-1", {}).properties,
        event("dev-1", {}).iothub_metadata,
        3,
    )
    endless = RawTwinEvent(
        b'{"properties": {"reported": {"health": ' + b"9" * 20_000 + b"}}}",
        deep.properties,
        deep.iothub_metadata,
        4,
    )
    outcome = await handle_twin_batch(rig.sync, [deep, endless, good], "r")
    assert outcome.recorded == 2
    assert rig.attributes("AST-2") == {"health": "ok"}
    assert [m["reason"] for m in rig.dead.messages] == ["invalid event", "invalid event"]
    assert all(m["request"].get("truncated") for m in rig.dead.messages), "kept within bounds"
