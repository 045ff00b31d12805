"""The benchmark driver: the goal table reads the result files and says met or missed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

import bench.__main__ as driver
from bench import pure_path


def rendered(tmp_path: Path) -> str:
    console = Console(width=200, record=True)
    console.print(driver.goal_table())
    return console.export_text()


def row(text: str, measure: str) -> str:
    [line] = [line for line in text.splitlines() if measure in line]
    return line


def test_each_goal_is_judged_from_its_result_file(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "RESULTS_DIR", tmp_path)
    (tmp_path / "cold_start.json").write_text(json.dumps({"importMs": 310.0}))
    (tmp_path / "journey.json").write_text(json.dumps({"allAssignedSeconds": 6.5}))
    text = rendered(tmp_path)
    assert "missed" in row(text, "import function_app")
    assert "310.00" in row(text, "import function_app")
    assert "met" in row(text, "all assigned")
    assert "not run" in row(text, "webhook p99, 100 at once")


def test_the_pure_path_benchmark_measures_both_request_kinds():
    result = pure_path.run(requests_per_run=60, runs=1)
    for kind in ("certificate", "info-only"):
        figures = result["milliseconds"][kind]
        assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]


def test_an_unknown_benchmark_is_named(capsys: pytest.CaptureFixture[str]):
    assert driver.main(["no-such-bench"]) == 2
    assert "no-such-bench" in capsys.readouterr().out
