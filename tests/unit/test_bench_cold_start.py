"""Cold start both ways: each probe's SDK follows its exporter, and the table shows the cost."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from bench import cold_start
from bench.side_by_side import summarise


def _text(table: Any) -> str:
    console = Console(width=220, record=True)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize(("exporter", "sdk_loaded"), [("none", True), ("otlp", False)])
def test_a_probe_whose_sdk_does_not_follow_its_exporter_fails_the_cold_start(exporter, sdk_loaded):
    with pytest.raises(cold_start.ExporterMismatch):
        cold_start.check_sample(exporter, {"status": 200, "sdkLoaded": sdk_loaded})


def test_a_probe_that_follows_its_exporter_passes():
    cold_start.check_sample("none", {"status": 200, "sdkLoaded": False})
    cold_start.check_sample("otlp", {"status": 200, "sdkLoaded": True})


def test_the_no_exporter_probe_inherits_no_telemetry_setting(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x")
    none = cold_start.probe_env("none", receiver_url="http://127.0.0.1:1", POLICY_FILE="p.toml")
    assert not [k for k in none if k.startswith("OTEL_")]
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" not in none
    assert none["POLICY_FILE"] == "p.toml"
    otlp = cold_start.probe_env("otlp", receiver_url="http://127.0.0.1:1")
    assert otlp["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:1"
    assert "OTEL_TRACES_SAMPLER" not in otlp


def test_the_cold_start_table_shows_what_the_exporter_adds():
    sample = dict.fromkeys(cold_start.FIGURES, 100.0)
    traced = {**sample, "startTelemetryMs": 180.0}
    result = {
        "runs": 1,
        "exporters": summarise(
            [{"none": sample, "otlp": traced}], cold_start.FIGURES, base="none", other="otlp"
        ),
    }
    [row] = [line for line in _text(cold_start.table(result)).splitlines() if "OTLP - none" in line]
    assert "+80.0 ms" in row
