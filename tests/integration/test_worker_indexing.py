"""The app as Microsoft's Python worker indexes it, and the dev functions host beside it.

azure-functions-runtime is the worker Azure runs for Python 3.13 and later: asked to index the app
(WorkerInitRequest, then FunctionsMetadataRequest), it imports function_app.py, calls
get_functions() and answers the host with each function's bindings, raw binding JSON and retry
options. These tests pin what it answers, and hold the dev host's own indexing
(devstack/function_host/app_loader.py) to it, so that the two cannot drift. The worker installs
only on Python 3.13 and later (`make test313`); the dev host's half runs on every Python.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_identity_settings import KEYLESS as IDENTITY_ONLY

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SETTINGS: dict[str, str] = json.loads((REPO / "local.settings.sample.json").read_text())[
    "Values"
]
REFERENCE = re.compile(r"%([^%]+)%")
PYTHON = (sys.version_info.major, sys.version_info.minor)

# Every function as the worker reports it to the host: its bindings' raw JSON (the function.json
# the host builds its triggers from), its trigger and its retry policy in seconds.
EXPECTED: dict[str, dict[str, Any]] = {
    "allocate": {
        "trigger": "req",
        "bindings": [
            {
                "direction": "IN",
                "type": "httpTrigger",
                "name": "req",
                "methods": ["POST"],
                "authLevel": "FUNCTION",
                "route": "allocate",
            },
            {"direction": "OUT", "type": "http", "name": "$return"},
        ],
        "retry": None,
    },
    "asset_changed": {
        "trigger": "event",
        "bindings": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
        "retry": None,
    },
    "twin_changed": {
        "trigger": "events",
        "bindings": [
            {
                "direction": "IN",
                "type": "eventHubTrigger",
                "name": "events",
                "connection": "IOT_HUB_EVENTS_CONNECTION",
                "eventHubName": "%TWIN_EVENTS_HUB%",
                "consumerGroup": "%TWIN_EVENTS_CONSUMER_GROUP%",
                "cardinality": "MANY",
            }
        ],
        "retry": {
            "strategy": "exponential_backoff",
            "max_retry_count": 8,
            "minimum_interval": 2.0,
            "maximum_interval": 300.0,
        },
    },
    "reconcile": {
        "trigger": "message",
        "bindings": [
            {
                "direction": "IN",
                "type": "queueTrigger",
                "name": "message",
                "queueName": "%RECONCILIATION_QUEUE%",
                "connection": "AzureWebJobsStorage",
            }
        ],
        "retry": None,
    },
    "reconciliation_poison": {
        "trigger": "message",
        "bindings": [
            {
                "direction": "IN",
                "type": "queueTrigger",
                "name": "message",
                "queueName": "%RECONCILIATION_QUEUE%-poison",
                "connection": "AzureWebJobsStorage",
            }
        ],
        "retry": None,
    },
    "pending_sweep": {
        "trigger": "timer",
        "bindings": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "0 */15 * * * *",
                "runOnStartup": False,
                "useMonitor": True,
            }
        ],
        "retry": None,
    },
    "backlog_probe": {
        "trigger": "timer",
        "bindings": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "0 * * * * *",
                "runOnStartup": False,
                "useMonitor": False,
            }
        ],
        "retry": None,
    },
    "audit_writer": {
        "trigger": "message",
        "bindings": [
            {
                "direction": "IN",
                "type": "queueTrigger",
                "name": "message",
                "queueName": "%AUDIT_QUEUE%",
                "connection": "AzureWebJobsStorage",
            }
        ],
        "retry": None,
    },
    "health": {
        "trigger": "req",
        "bindings": [
            {
                "direction": "IN",
                "type": "httpTrigger",
                "name": "req",
                "methods": ["GET"],
                "authLevel": "FUNCTION",
                "route": "health",
            },
            {"direction": "OUT", "type": "http", "name": "$return"},
        ],
        "retry": None,
        # It reads no invocation id: nothing it answers is recorded anywhere.
        "requires_context": False,
    },
}
EXPECTED_REFERENCES = {
    "twin_changed": {"TWIN_EVENTS_HUB", "TWIN_EVENTS_CONSUMER_GROUP"},
    "reconcile": {"RECONCILIATION_QUEUE"},
    "reconciliation_poison": {"RECONCILIATION_QUEUE"},
    "audit_writer": {"AUDIT_QUEUE"},
}
EXPECTED_CONNECTIONS = {
    "twin_changed": "IOT_HUB_EVENTS_CONNECTION",
    "reconcile": "AzureWebJobsStorage",
    "reconciliation_poison": "AzureWebJobsStorage",
    "audit_writer": "AzureWebJobsStorage",
}


def _probe(indexer: str, settings: dict[str, str] = SAMPLE_SETTINGS) -> dict[str, Any]:
    """One indexing in a fresh interpreter, with these app settings (default: `make run`'s)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SAMPLE_SETTINGS and not k.startswith("AzureWebJobsStorage")
    }
    env.update(settings)
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.indexing_probe", indexer],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def worker() -> dict[str, Any]:
    if PYTHON < (3, 13):
        pytest.skip("azure-functions-runtime, Azure's worker for Python 3.13+, installs only there")
    return _probe("worker")


@pytest.fixture(scope="module")
def devhost() -> dict[str, Any]:
    return _probe("devhost")


@pytest.fixture(scope="module")
def keyless_worker() -> dict[str, Any]:
    if PYTHON < (3, 13):
        pytest.skip("azure-functions-runtime, Azure's worker for Python 3.13+, installs only there")
    return _probe("worker", IDENTITY_ONLY)


def test_with_identity_only_settings_the_worker_indexes_the_same_functions(worker, keyless_worker):
    assert not any(word in json.dumps(IDENTITY_ONLY) for word in ("AccountKey", "SharedAccess"))
    assert [f["name"] for f in keyless_worker["functions"]] == list(EXPECTED)
    assert keyless_worker["functions"] == worker["functions"]


def test_with_identity_only_settings_the_dev_host_indexes_the_same_functions(devhost):
    keyless = _probe("devhost", IDENTITY_ONLY)
    assert [f["name"] for f in keyless["functions"]] == list(EXPECTED)
    assert keyless["functions"] == devhost["functions"]


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {function["name"]: function for function in report["functions"]}


# --- what the worker reports --------------------------------------------------------------------


def test_the_worker_indexes_every_function_with_its_bindings_and_retry_policy(worker):
    assert worker["python"] == "{}.{}".format(*PYTHON)
    assert worker["azure_functions"].startswith("2.")
    assert [f["name"] for f in worker["functions"]] == list(EXPECTED)
    for function in worker["functions"]:
        expected = EXPECTED[function["name"]]
        assert function["raw_bindings"] == expected["bindings"], function["name"]
        assert function["bindings"] == {
            raw["name"]: {
                "type": raw["type"],
                "direction": raw["direction"].lower(),
                "data_type": "undefined",
            }
            for raw in expected["bindings"]
        }, function["name"]
        assert function["triggers"] == [expected["trigger"]], function["name"]
        assert function["retry"] == expected["retry"], function["name"]
        assert function["entry_point"] == function["name"]
        assert function["script_file"] == "function_app.py"
        assert Path(function["directory"]) == REPO
        assert function["language"] == "python"
        assert function["properties"] == {"worker_indexed": "True"}


def test_the_worker_loads_each_function_async_with_its_context(worker):
    for function in worker["functions"]:
        expected = EXPECTED[function["name"]]
        trigger = next(b for b in expected["bindings"] if b["name"] == expected["trigger"])
        http = function["name"] in ("allocate", "health")
        assert function["loaded"] == {
            "is_async": True,
            "requires_context": expected.get("requires_context", True),
            "is_http_func": http,
            "inputs": {expected["trigger"]: trigger["type"]},
            "outputs": {},
            "return": "http" if http else None,
        }, function["name"]


def _references(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for function in report["functions"]:
        for raw in function["raw_bindings"]:
            for value in raw.values():
                if isinstance(value, str):
                    for name in REFERENCE.findall(value):
                        found.setdefault(function["name"], set()).add(name)
    return found


def _connections(report: dict[str, Any]) -> dict[str, str]:
    return {
        function["name"]: raw["connection"]
        for function in report["functions"]
        for raw in function["raw_bindings"]
        if "connection" in raw
    }


def test_the_worker_reports_each_setting_reference_and_connection_and_make_run_defines_them(
    worker,
):
    assert _references(worker) == EXPECTED_REFERENCES
    assert _connections(worker) == EXPECTED_CONNECTIONS
    named = set().union(*EXPECTED_REFERENCES.values(), EXPECTED_CONNECTIONS.values())
    assert named - SAMPLE_SETTINGS.keys() == set()


# --- the dev host beside it ---------------------------------------------------------------------


def worker_view(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the worker tells the host, in the terms the dev host reads it (HTTP routes as the
    Functions host derives them: the function's name when no route, every method when none)."""
    view = {}
    for function in report["functions"]:
        triggers = function["triggers"]
        trigger = triggers[0] if len(triggers) == 1 else triggers
        raw_trigger: dict[str, Any] = next(
            (b for b in function["raw_bindings"] if b["name"] == trigger), {}
        )
        loaded = function["loaded"]
        view[function["name"]] = {
            "trigger": trigger,
            "bindings": {
                name: {"type": b["type"], "direction": b["direction"]}
                for name, b in function["bindings"].items()
            },
            "raw_bindings": function["raw_bindings"],
            "retry": function["retry"],
            "is_async": loaded["is_async"],
            "context": loaded["requires_context"],
            "parameters": sorted(
                [*loaded["inputs"], *loaded["outputs"]]
                + (["context"] if loaded["requires_context"] else [])
            ),
            "http": {
                "route": raw_trigger.get("route") or function["name"],
                "methods": sorted(m.upper() for m in raw_trigger.get("methods") or ()),
                "auth_level": str(raw_trigger.get("authLevel", "function")).lower(),
            }
            if loaded["is_http_func"]
            else None,
        }
    return view


def devhost_view(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        function["name"]: {
            "trigger": function["trigger"],
            "bindings": function["bindings"],
            "raw_bindings": function["raw_bindings"],
            "retry": function["retry"],
            "is_async": function["is_async"],
            "context": function["wants_context"],
            "parameters": function["parameters"],
            "http": function["http"],
        }
        for function in report["functions"]
    }


def test_the_dev_host_indexes_the_app_as_the_worker_does(worker, devhost):
    assert devhost["azure_functions"] == worker["azure_functions"]
    assert list(devhost_view(devhost)) == list(worker_view(worker))
    assert devhost_view(devhost) == worker_view(worker)


def _rename_connection(report: dict[str, Any]) -> None:
    _by_name(report)["reconcile"]["raw_bindings"][0]["connection"] = "OtherStorage"


def _flip_direction(report: dict[str, Any]) -> None:
    _by_name(report)["allocate"]["bindings"]["$return"]["direction"] = "in"


def _stretch_retry(report: dict[str, Any]) -> None:
    _by_name(report)["twin_changed"]["retry"]["maximum_interval"] = 600.0


def _drop_context(report: dict[str, Any]) -> None:
    _by_name(report)["audit_writer"]["loaded"]["requires_context"] = False


def _drop_function(report: dict[str, Any]) -> None:
    report["functions"].pop()


def _open_route(report: dict[str, Any]) -> None:
    _by_name(report)["allocate"]["raw_bindings"][0]["authLevel"] = "ANONYMOUS"


@pytest.mark.parametrize(
    "drift",
    [
        _rename_connection,
        _flip_direction,
        _stretch_retry,
        _drop_context,
        _drop_function,
        _open_route,
    ],
)
def test_the_comparison_catches_a_drift(worker, devhost, drift: Callable[[dict[str, Any]], None]):
    drifted = copy.deepcopy(worker)
    drift(drifted)
    assert devhost_view(devhost) != worker_view(drifted)


def test_the_dev_host_indexes_every_function_with_its_bindings_and_retry_policy(devhost):
    """The dev host's half of the table, on every Python (the worker's needs 3.13)."""
    assert [f["name"] for f in devhost["functions"]] == list(EXPECTED)
    for function in devhost["functions"]:
        expected = EXPECTED[function["name"]]
        assert function["raw_bindings"] == expected["bindings"], function["name"]
        assert function["trigger"] == expected["trigger"], function["name"]
        assert function["retry"] == expected["retry"], function["name"]
    assert _references(devhost) == EXPECTED_REFERENCES
    assert _connections(devhost) == EXPECTED_CONNECTIONS


def test_the_dev_host_resolves_each_setting_reference_to_its_app_setting(devhost):
    def resolved(value: str) -> str:
        return REFERENCE.sub(lambda match: SAMPLE_SETTINGS[match.group(1)], value)

    for function in devhost["functions"]:
        expected = {
            f"{raw['name']}.{key}": resolved(value)
            for raw in EXPECTED[function["name"]]["bindings"]
            for key, value in raw.items()
            if isinstance(value, str) and REFERENCE.search(value)
        }
        assert function["resolved"] == expected, function["name"]
    assert _by_name(devhost)["reconciliation_poison"]["resolved"] == {
        "message.queueName": SAMPLE_SETTINGS["RECONCILIATION_QUEUE"] + "-poison"
    }
