"""Two configurations measured in interleaved rounds: the order of each round, and the summary.

Each round measures both sides back to back, the first side alternating from round to round, so
that the machine's noise and drift fall on both alike. The summary is the median over rounds of
each side's figures, and the median over rounds of each round's own ratio and difference.
"""

from __future__ import annotations

import statistics
from typing import Any

Round = dict[str, dict[str, float]]
"""side -> figure name -> value, for one round."""


def side_order(round_index: int, sides: tuple[str, str]) -> tuple[str, str]:
    """Round 0 runs `sides` in order, round 1 the other way round, and so on (A B, B A, ...)."""
    first, second = sides
    return (first, second) if round_index % 2 == 0 else (second, first)


def paired_ratios(rounds: list[Round], figure: str, *, base: str, other: str) -> list[float]:
    """other / base for one figure, each round against itself."""
    return [r[other][figure] / r[base][figure] for r in rounds]


def paired_differences(rounds: list[Round], figure: str, *, base: str, other: str) -> list[float]:
    """other - base for one figure, each round against itself."""
    return [r[other][figure] - r[base][figure] for r in rounds]


def summarise(
    rounds: list[Round], figures: tuple[str, ...], *, base: str, other: str
) -> dict[str, Any]:
    """Each side's median per figure, and the medians of the paired ratios (other / base) and
    differences (other - base) per figure."""
    if not rounds:
        raise ValueError("no rounds to summarise")
    summary: dict[str, Any] = {
        side: {f: statistics.median(r[side][f] for r in rounds) for f in figures}
        for side in (base, other)
    }
    summary["ratio"] = {
        f: statistics.median(paired_ratios(rounds, f, base=base, other=other)) for f in figures
    }
    summary["difference"] = {
        f: statistics.median(paired_differences(rounds, f, base=base, other=other)) for f in figures
    }
    summary["rounds"] = rounds
    return summary
