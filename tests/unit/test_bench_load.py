"""The benchmark's timing: a 503 is the app shedding load, counted; other failures end a run."""

from __future__ import annotations

import pytest

from bench.load import Shed, timed


async def test_a_shed_call_is_counted_and_timed_and_the_run_goes_on() -> None:
    async def ok() -> None:
        return None

    async def shed() -> None:
        raise Shed

    for at_once in (True, False):
        result = await timed([ok, shed, ok, shed, shed], at_once=at_once)
        assert result["shed"] == 3
        assert result["perSecond"] > 0
        assert result["p50"] >= 0


async def test_any_other_failure_ends_the_run() -> None:
    async def broken() -> None:
        raise AssertionError(500)

    with pytest.raises(AssertionError):
        await timed([broken], at_once=True)
