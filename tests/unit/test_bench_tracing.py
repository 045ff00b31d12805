"""The tracing comparison's arithmetic and report: interleaving, paired ratios, the span check."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from bench import tracing
from bench.process_cpu import cpu_ticks
from bench.side_by_side import Round, paired_ratios, side_order, summarise


def _round(off: dict[str, float], on: dict[str, float]) -> Round:
    return {"off": off, "on": on}


def test_the_first_side_alternates_from_round_to_round():
    assert [side_order(i, ("off", "on")) for i in range(4)] == [
        ("off", "on"),
        ("on", "off"),
        ("off", "on"),
        ("on", "off"),
    ]


def test_the_ratio_is_the_median_of_each_rounds_own_ratio_not_a_ratio_of_medians():
    rounds = [
        _round({"p99": 10.0}, {"p99": 11.0}),
        _round({"p99": 40.0}, {"p99": 48.0}),
        _round({"p99": 20.0}, {"p99": 26.0}),
    ]
    assert paired_ratios(rounds, "p99", base="off", other="on") == pytest.approx([1.1, 1.2, 1.3])
    summary = summarise(rounds, ("p99",), base="off", other="on")
    assert summary["off"]["p99"] == 20.0
    assert summary["on"]["p99"] == 26.0
    # The ratio of the medians would be 1.3; the paired ratios' median is 1.2.
    assert summary["ratio"]["p99"] == pytest.approx(1.2)
    assert summary["difference"]["p99"] == pytest.approx(6.0)
    assert summary["rounds"] == rounds


def test_no_rounds_is_an_error_not_a_figure():
    with pytest.raises(ValueError, match="no rounds"):
        summarise([], ("p50",), base="off", other="on")


def test_cpu_time_is_read_past_a_command_name_holding_spaces_and_parentheses():
    line = "4242 (python (worker) 1) S 1 4242 4242 0 -1 4194560 9 0 0 0 170 30 0 0 20 0 3 0 5 1 2"
    assert cpu_ticks(line) == 200


def test_only_the_traced_host_gets_the_exporter_and_each_host_its_own_queues():
    off = tracing.host_settings("off", "http://127.0.0.1:4318")
    on = tracing.host_settings("on", "http://127.0.0.1:4318")
    assert off["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    assert "OTEL_BSP_SCHEDULE_DELAY" not in off
    assert on["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert int(on["OTEL_BSP_SCHEDULE_DELAY"]) < 5000
    for name in ("AUDIT_QUEUE", "AUDIT_TABLE", "RECONCILIATION_QUEUE", "DEAD_LETTER_QUEUE"):
        assert off[name] != on[name]
    assert set(tracing.host_queues("on").values()) <= set(on.values())
    # Otherwise the two hosts are configured alike.
    assert set(on) - set(off) == {"OTEL_BSP_SCHEDULE_DELAY"}
    assert {k for k in off if off[k] != on[k]} == {
        "AUDIT_QUEUE",
        "AUDIT_TABLE",
        "RECONCILIATION_QUEUE",
        "DEAD_LETTER_QUEUE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }


def _figures(p50: float) -> dict[str, float]:
    return {"p50": p50, "p95": p50 * 2, "p99": p50 * 3, "perSecond": 100.0, "hostCpuMs": 2.5}


def _tracing_result(received: int) -> dict[str, Any]:
    rounds = [_round(_figures(10.0), _figures(12.0)), _round(_figures(20.0), _figures(22.0))]
    return {
        "rounds": 2,
        "results": {
            "100": {
                "devices": 100,
                "atOnce": True,
                **summarise(rounds, tracing.FIGURES, base="off", other="on"),
                "allocationsOn": 200,
                "allocationSpansReceived": received,
            }
        },
    }


def _text(table: Any) -> str:
    console = Console(width=220, record=True)
    console.print(table)
    return console.export_text()


def test_the_table_shows_both_sides_and_their_ratio_with_the_spans_received():
    text = _text(tracing.table(_tracing_result(received=200)))
    [off] = [line for line in text.splitlines() if "100 at once" in line]
    assert "off" in off
    assert "15.0" in off  # the median p50
    [on] = [line for line in text.splitlines() if "200 of 200" in line]
    assert "17.0" in on
    [ratio] = [line for line in text.splitlines() if "on / off" in line]
    # (1.2 + 1.1) / 2: the median of two paired ratios.
    assert "1.15" in ratio


def test_spans_missing_from_an_on_run_are_shown_in_red():
    assert tracing.spans_cell(200, 200) == "200 of 200"
    assert tracing.spans_cell(150, 200) == "[red]150 of 200[/red]"
    assert "150 of 200" in _text(tracing.table(_tracing_result(received=150)))
