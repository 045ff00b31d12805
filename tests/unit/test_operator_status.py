"""`operator_cli status` without a stack: the summary of what each source said, its verdict and
exit code, the --json shape, the screen, and where the command finds the app and the hubs."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from health.report import BreakerHealth, HealthReport, PolicyHealth
from messages import DeadLetter, ReconciliationMessage
from operator_cli.errors import ConfigurationError
from operator_cli.status_config import HealthEndpoint, health_endpoint, hub_settings
from operator_cli.status_rendering import duration, status_screen
from operator_cli.status_summary import (
    OTHER_REASONS,
    HubDevices,
    PeekedMessage,
    QueueGlance,
    QueueNames,
    Readings,
    StatusSummary,
    Unread,
    status_json,
    summarise,
    tally_devices,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NAMES = QueueNames("reconciliation", "dead-letters", "audit")
EAST = "hub-us-east.azure-devices.net"


def encoded(message: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(message).encode()).decode()


def peeked(*texts: str, inserted: datetime = NOW) -> list[PeekedMessage]:
    return [PeekedMessage(f"m{i}", inserted, text) for i, text in enumerate(texts)]


def fallback(recorded: datetime) -> str:
    message = ReconciliationMessage(
        kind="allocation",
        reason="asset system unavailable",
        detail="AssetUnavailable",
        device_id="d1",
        recorded_at=recorded,
    )
    return encoded(message.to_message())


def letter(reason: str) -> str:
    return encoded(
        DeadLetter(source="allocation", kind="allocation", reason=reason, detail="-").to_message()
    )


def report(*states: str) -> HealthReport:
    breakers = [
        BreakerHealth(
            name=f"b{i}",
            state=state,
            since=NOW - timedelta(seconds=30) if state != "closed" else None,
            failures=5 if state != "closed" else 0,
            fail_max=5,
            reset_seconds=30,
        )
        for i, state in enumerate(states)
    ]
    return HealthReport(
        status="ok" if set(states) <= {"closed"} else "degraded",
        checked_at=NOW,
        policy=PolicyHealth(version="v1"),
        breakers=breakers,
    )


def readings(**changes: object) -> Readings:
    base: dict[str, object] = {
        "read_at": NOW,
        "app_url": "https://app.example/api/health",
        "app": report("closed", "closed"),
        "reconciliation": QueueGlance(0, []),
        "dead_letters": QueueGlance(0, []),
        "audit": QueueGlance(0, []),
        "devices": [HubDevices(EAST, {}, None, False)],
    }
    return Readings(**{**base, **changes})  # type: ignore[arg-type]


def summary(**changes: object) -> StatusSummary:
    return summarise(readings(**changes), NAMES, "base64")


def test_everything_read_and_every_breaker_closed_is_ok_exit_0():
    assert (summary().verdict, summary().exit_code) == ("ok", 0)


def test_a_breaker_not_closed_is_degraded_exit_1_even_when_something_else_was_not_read():
    degraded = summary(app=report("closed", "open"))
    assert (degraded.verdict, degraded.exit_code) == ("degraded", 1)
    partly = summary(app=report("half-open"), audit=Unread("queue audit: cannot reach"))
    assert (partly.verdict, partly.exit_code) == ("degraded", 1)


@pytest.mark.parametrize(
    "unread",
    [
        {"app": Unread("the app did not answer (ClientConnectorError)")},
        {"reconciliation": Unread("queue reconciliation: the queue service answered 403")},
        {"dead_letters": Unread("x")},
        {"audit": Unread("x")},
        {"devices": Unread("not configured")},
        {"devices": [HubDevices(EAST, {}, None, False, "HubUnavailable: 503")]},
    ],
)
def test_anything_not_read_is_incomplete_exit_3(unread):
    incomplete = summary(**unread)
    assert (incomplete.verdict, incomplete.exit_code) == ("incomplete", 3)


def test_fallbacks_are_counted_by_kind_and_dated_by_when_they_were_recorded():
    older, newer = NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)
    deregistration = encoded(
        ReconciliationMessage(kind="deregistration", reason="r", detail="d").to_message()
    )
    glance = QueueGlance(40, peeked(fallback(newer), deregistration, fallback(older), "%%%"))
    figures = summary(reconciliation=glance).reconciliation
    assert figures.by_kind == {"allocation": 2, "deregistration": 1}
    assert figures.unreadable == 1
    assert (figures.fallbacks_seen, figures.oldest_fallback_at) == (2, older)
    assert (figures.queue.messages, figures.queue.seen, figures.queue.complete) == (40, 4, False)


def test_dead_letters_are_counted_by_reason_most_frequent_first_then_the_rest_summed():
    texts = [letter(f"reason-{n}") for n in range(10) for _ in range(10 - n)]
    texts.append("not base64 at all")
    figures = summary(dead_letters=QueueGlance(len(texts), peeked(*texts))).dead_letters
    assert figures.by_reason[0] == ("reason-0", 10)
    assert len(figures.by_reason) == 8
    assert figures.by_reason[-1] == (OTHER_REASONS, 3 + 2 + 1)
    assert figures.unreadable == 1


def test_devices_are_tallied_by_state_with_the_oldest_pending_and_the_cap():
    tags: list[dict[str, object]] = [
        {"provisioningState": "pendingReconciliation", "pendingSince": "2026-05-01T11:00:00Z"},
        {"provisioningState": "pendingReconciliation", "pendingSince": "2026-05-01T10:00:00Z"},
        {"provisioningState": "pendingReconciliation", "pendingSince": "garbage"},
        {"provisioningState": "refused"},
        {"provisioningState": 7},
    ]
    hub = tally_devices(EAST, tags, limit=5)
    assert hub.by_state == {"?": 1, "pendingReconciliation": 3, "refused": 1}
    assert hub.oldest_pending_since == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert hub.capped
    assert not tally_devices(EAST, tags, limit=6).capped


def test_the_json_keeps_its_shape_when_nothing_could_be_read():
    nothing = summary(
        app=Unread("no app"),
        reconciliation=Unread("no queue"),
        dead_letters=Unread("no queue"),
        audit=Unread("no queue"),
        devices=Unread("no hubs"),
    )
    document = status_json(nothing)
    assert document == {
        "schemaVersion": 1,
        "readAt": "2026-05-01T12:00:00Z",
        "verdict": "incomplete",
        "exitCode": 3,
        "app": {
            "url": "https://app.example/api/health",
            "answered": False,
            "problem": "no app",
            "status": None,
            "checkedAt": None,
            "policyVersion": None,
            "breakers": [],
        },
        "reconciliation": {
            **_unread_queue("reconciliation"),
            "byKind": {},
            "unreadable": 0,
            "fallbacksSeen": 0,
            "oldestFallbackAt": None,
            "oldestFallbackAgeSeconds": None,
        },
        "deadLetters": {**_unread_queue("dead-letters"), "byReason": [], "unreadable": 0},
        "auditBacklog": _unread_queue("audit"),
        "devices": {
            "read": False,
            "problem": "no hubs",
            "byState": {},
            "capped": False,
            "oldestPendingSince": None,
            "oldestPendingAgeSeconds": None,
            "hubs": [],
        },
    }


def _unread_queue(name: str) -> dict[str, object]:
    return {
        "queue": name,
        "read": False,
        "problem": "no queue",
        "messages": None,
        "seen": 0,
        "complete": False,
        "oldestQueuedAt": None,
        "oldestAgeSeconds": None,
    }


def test_the_json_gives_ages_never_below_zero_and_the_breakers_as_the_app_said():
    ahead = NOW + timedelta(seconds=3)  # another machine's clock running ahead
    document = status_json(
        summary(
            app=report("open", "closed"),
            audit=QueueGlance(2, peeked("a", "b", inserted=ahead)),
        )
    )
    assert document["auditBacklog"]["oldestAgeSeconds"] == 0.0
    assert document["app"]["breakers"][0] == {
        "name": "b0",
        "state": "open",
        "since": "2026-05-01T11:59:30Z",
        "sinceSeconds": 30.0,
        "failures": 5,
        "failMax": 5,
        "resetSeconds": 30.0,
    }


def screen(summary: StatusSummary) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(status_screen(summary))
    return console.export_text()


def test_the_screen_shows_each_source_and_says_what_was_not_read():
    text = screen(
        summary(
            app=Unread("the app did not answer (ClientConnectorError)"),
            dead_letters=QueueGlance(1, peeked(letter("unknown-device"))),
            devices=[
                HubDevices(EAST, {"pendingReconciliation": 2}, NOW - timedelta(hours=3), False)
            ],
        )
    )
    assert "did not answer (ClientConnectorError)" in text
    assert "unknown-device" in text
    assert "pendingReconciliation" in text
    assert "3 h 0 min" in text
    assert "2 device(s) pending on their twins, the oldest for 3 h 0 min" in text
    assert "status incomplete" in text
    assert "(exit code 3)" in text


def test_text_from_messages_cannot_restyle_the_terminal():
    text = screen(summary(dead_letters=QueueGlance(1, peeked(letter("bad\x1b[2J[red]x")))))
    assert "\x1b" not in text
    assert "bad\\x1b[2J[red]x" in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0.4, "0 s"), (119, "119 s"), (120, "2 min"), (7300, "2 h 1 min")],
)
def test_durations_read_at_a_glance(seconds, shown):
    assert duration(seconds) == shown
    assert duration(3 * 86400 + 5 * 3600) == "3 d 5 h"


def stack_file(tmp_path: Path, description: dict[str, object]) -> Path:
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "stack.json").write_text(json.dumps(description))
    return tmp_path


def test_the_health_endpoint_comes_from_the_settings_else_the_local_stack(tmp_path):
    cwd = stack_file(
        tmp_path, {"functionHost": "http://127.0.0.1:7071/", "functionKey": "stack-key"}
    )
    assert health_endpoint({}, cwd) == HealthEndpoint(
        "http://127.0.0.1:7071/api/health", "stack-key"
    )
    key_file = tmp_path / "health.key"
    key_file.write_text("from-a-file\n")
    assert health_endpoint(
        {"HEALTH_URL": "https://app.example/api/health", "HEALTH_FUNCTION_KEY_FILE": str(key_file)},
        cwd,
    ) == HealthEndpoint("https://app.example/api/health", "from-a-file")
    assert health_endpoint({}, tmp_path / "elsewhere") is None


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example/api/health?code=the-key",
        "https://user:secret@app.example/api/health",
        "app.example/api/health",
    ],
)
def test_a_health_url_with_a_credential_or_without_a_scheme_is_refused(url, tmp_path):
    with pytest.raises(ConfigurationError, match="HEALTH_URL") as refused:
        health_endpoint({"HEALTH_URL": url}, tmp_path)
    assert "the-key" not in str(refused.value)
    assert "secret" not in str(refused.value)


def test_the_hubs_come_from_the_app_settings_else_the_local_stack(tmp_path):
    string = f"HostName={EAST};SharedAccessKeyName=o;SharedAccessKey=eA=="
    cwd = stack_file(
        tmp_path,
        {"hubs": {EAST: {"url": "https://x", "connectionString": string}}, "tls": {"caCert": "c"}},
    )
    from_stack = hub_settings({}, cwd)
    assert from_stack == {
        "IOT_HUB_CONNECTION_STRINGS": json.dumps({EAST: string}),
        "IOT_HUB_CA_BUNDLE": "c",
    }
    environ = {"IOT_HUB_MANAGED_IDENTITY_HUBS": EAST}
    assert hub_settings(environ, cwd) is environ
    assert hub_settings({}, tmp_path / "elsewhere") is None


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("IOT_HUB_CONNECTION_STRINGS", "{not json", "IOT_HUB_CONNECTION_STRINGS"),
        ("HEALTH_URL", "https://app.example/api/health?code=s3cr3t", "HEALTH_URL"),
        ("QUEUE_MESSAGE_ENCODING", "rot13", "QUEUE_MESSAGE_ENCODING"),
    ],
)
def test_a_bad_setting_is_exit_2_before_anything_is_read(
    setting, value, named, tmp_path, capsys, monkeypatch
):
    from operator_cli.commands import main

    # main() quiets the SDK's loggers for the process: put them back for the other tests.
    sdk = logging.getLogger("azure")
    monkeypatch.setattr(sdk, "propagate", sdk.propagate)
    monkeypatch.setattr(sdk, "handlers", list(sdk.handlers))
    environ = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", setting: value}
    assert main(["status"], environ=environ, cwd=tmp_path) == 2
    said = capsys.readouterr().err
    assert named in said
    assert "s3cr3t" not in said
