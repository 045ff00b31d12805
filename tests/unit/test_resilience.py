"""Retries, the deadline, Retry-After and the circuit breaker, around a scripted asset port."""

import asyncio
import time
from datetime import UTC, datetime

import pytest

from asset_client import (
    AssetAccessDenied,
    AssetCircuitOpen,
    AssetConflict,
    AssetContractViolation,
    AssetNotFound,
    AssetRequestRejected,
    AssetUnavailable,
    AssetVersionConflict,
)
from resilience.breaker import Breaker, NoVerdict
from resilience.deadline import request_budget
from resilience.resilient_assets import (
    AssetBudgetSpent,
    ResilientAssetRepository,
    is_outage,
    is_transient,
)
from resilience.retry import RetryPolicy
from tests.unit.fakes import FakeAssetRepository, make_asset


class Scripted(FakeAssetRepository):
    """Answers find_by_device_id from a script of errors (then succeeds)."""

    def __init__(self, script, delay=0.0):
        super().__init__(make_asset(device_id="dev-1"))
        self.script = list(script)
        self.delay = delay
        self.attempts = 0

    async def find_by_device_id(self, device_id):
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error
        return await super().find_by_device_id(device_id)


def resilient(inner, *, attempts=4, deadline=2.0, attempt_timeout=1.0, fail_max=5, reset=30.0):
    return ResilientAssetRepository(
        inner,
        policy=RetryPolicy(
            max_attempts=attempts,
            deadline_seconds=deadline,
            attempt_timeout_seconds=attempt_timeout,
            initial_backoff_seconds=0.01,
            max_backoff_seconds=0.05,
        ),
        breaker=Breaker(
            "assets", is_failure=is_outage, fail_max=fail_max, reset_timeout_seconds=reset
        ),
    )


@pytest.mark.parametrize("status", [None, 429, 502, 503, 504])
async def test_transient_failures_are_retried_until_success(status):
    inner = Scripted([AssetUnavailable("x", status=status)] * 2)
    assert [a.asset_id for a in await resilient(inner).find_by_device_id("dev-1")] == ["AST-1001"]
    assert inner.attempts == 3


@pytest.mark.parametrize(
    "error",
    [
        AssetNotFound("404"),
        AssetRequestRejected("400", 400),
        AssetRequestRejected("422", 422),
        AssetUnavailable("500", status=500),
        AssetContractViolation("shape"),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status", "")),
)
async def test_a_4xx_or_a_500_is_never_retried(error):
    inner = Scripted([error])
    with pytest.raises(type(error)):
        await resilient(inner).find_by_device_id("dev-1")
    assert inner.attempts == 1


async def test_retries_stop_at_the_attempt_limit():
    inner = Scripted([AssetUnavailable("x")] * 10)
    with pytest.raises(AssetUnavailable):
        await resilient(inner, attempts=3).find_by_device_id("dev-1")
    assert inner.attempts == 3


async def test_retries_stop_at_the_deadline_even_with_attempts_left():
    inner = Scripted([None] * 0, delay=0.25)
    inner.script = [AssetUnavailable("slow")] * 100
    started = time.monotonic()
    with pytest.raises(AssetUnavailable):
        await resilient(inner, attempts=50, deadline=0.6).find_by_device_id("dev-1")
    # The budget bounds the call, not the attempt count: generous slack, no tight timing.
    assert time.monotonic() - started < 1.5
    assert 1 < inner.attempts < 50


async def test_a_slow_attempt_times_out_as_an_outage():
    inner = Scripted([], delay=5)
    with pytest.raises(AssetUnavailable, match="no answer within"):
        await resilient(inner, attempts=1, attempt_timeout=0.05).find_by_device_id("dev-1")


async def test_the_request_budget_caps_every_call_inside_it():
    inner = Scripted([AssetUnavailable("x")] * 100, delay=0.05)
    repo = resilient(inner, attempts=100, deadline=30)
    started = time.monotonic()
    with request_budget(0.3), pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    assert time.monotonic() - started < 1.0


async def test_retry_after_is_honoured_when_it_fits_the_budget():
    inner = Scripted([AssetUnavailable("busy", retry_after=0.3, status=503)])
    started = time.monotonic()
    await resilient(inner, deadline=2).find_by_device_id("dev-1")
    assert time.monotonic() - started >= 0.3
    assert inner.attempts == 2


async def test_a_retry_after_beyond_the_budget_ends_the_retries_at_once():
    inner = Scripted([AssetUnavailable("busy", retry_after=60, status=429)] * 3)
    started = time.monotonic()
    with pytest.raises(AssetUnavailable):
        await resilient(inner, deadline=2).find_by_device_id("dev-1")
    assert inner.attempts == 1
    assert time.monotonic() - started < 0.5


async def test_the_breaker_opens_after_n_failures_then_fails_fast_without_calling():
    inner = Scripted([AssetUnavailable("down")] * 100)
    repo = resilient(inner, attempts=1, fail_max=3)
    for _ in range(3):
        with pytest.raises(AssetUnavailable):
            await repo.find_by_device_id("dev-1")
    assert repo.breaker.state == "open"
    calls_so_far = inner.attempts
    started = time.perf_counter()
    with pytest.raises(AssetCircuitOpen):
        await repo.find_by_device_id("dev-1")
    assert time.perf_counter() - started < 0.05
    assert inner.attempts == calls_so_far
    assert repo.breaker.metrics.rejected["assets"] == 1
    assert repo.breaker.metrics.transitions[("assets", "open")] == 1


async def test_an_open_circuit_is_not_retried():
    inner = Scripted([AssetUnavailable("down")] * 100)
    repo = resilient(inner, attempts=1, fail_max=1)
    with pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    repo2_attempts = inner.attempts
    with pytest.raises(AssetCircuitOpen):
        await ResilientAssetRepository(
            inner, policy=RetryPolicy(max_attempts=5), breaker=repo.breaker
        ).find_by_device_id("dev-1")
    assert inner.attempts == repo2_attempts


async def test_4xx_answers_do_not_open_the_breaker():
    inner = Scripted([AssetRequestRejected("400", 400)] * 10)
    repo = resilient(inner, fail_max=2)
    for _ in range(5):
        with pytest.raises(AssetRequestRejected):
            await repo.find_by_device_id("dev-1")
    assert repo.breaker.state == "closed"


async def test_half_open_lets_exactly_one_trial_through():
    inner = Scripted([AssetUnavailable("down")] * 2, delay=0.0)
    repo = resilient(inner, attempts=1, fail_max=2, reset=0.2)
    for _ in range(2):
        with pytest.raises(AssetUnavailable):
            await repo.find_by_device_id("dev-1")
    assert repo.breaker.state == "open"
    await asyncio.sleep(0.25)
    inner.delay = 0.2  # the trial takes a while; everybody else arrives meanwhile
    before = inner.attempts
    results = await asyncio.gather(
        *(repo.find_by_device_id("dev-1") for _ in range(10)), return_exceptions=True
    )
    assert inner.attempts == before + 1
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, AssetCircuitOpen) for r in results if isinstance(r, Exception))
    assert repo.breaker.state == "closed"


async def test_a_cancelled_caller_is_not_a_failure():
    inner = Scripted([], delay=1)
    repo = resilient(inner, fail_max=1)
    task = asyncio.ensure_future(repo.find_by_device_id("dev-1"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert repo.breaker.state == "closed"


def test_the_predicates_split_transient_from_outage():
    assert is_transient(AssetUnavailable("t"))
    assert not is_transient(AssetUnavailable("500", status=500))
    assert is_outage(AssetUnavailable("500", status=500))
    assert not is_transient(AssetCircuitOpen("open"))
    assert not is_outage(AssetCircuitOpen("open"))
    assert not is_outage(AssetNotFound("404"))


# What counts toward the breaker: outages of the asset system, and nothing else.


@pytest.mark.parametrize(
    "error",
    [
        AssetUnavailable("asset API unreachable: ClientOSError"),
        AssetUnavailable("asset API timed out"),
        AssetUnavailable("429", status=429, retry_after=0),
        AssetUnavailable("500", status=500),
        AssetUnavailable("502", status=502),
        AssetUnavailable("503", status=503),
    ],
    ids=lambda e: f"status-{e.status}-{e}",
)
async def test_outages_count_toward_the_breaker(error):
    repo = resilient(Scripted([error]), attempts=1)
    with pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    assert repo.breaker.fail_counter == 1


async def test_the_asset_systems_own_timeout_counts():
    repo = resilient(Scripted([], delay=5), attempts=1, deadline=2, attempt_timeout=0.05)
    with pytest.raises(AssetUnavailable, match="no answer within") as caught:
        await repo.find_by_device_id("dev-1")
    assert not isinstance(caught.value, AssetBudgetSpent)
    assert repo.breaker.fail_counter == 1


@pytest.mark.parametrize(
    "error",
    [
        AssetRequestRejected("400", 400),
        AssetAccessDenied("401"),
        AssetAccessDenied("403"),
        AssetNotFound("404"),
        AssetConflict("409"),
        AssetVersionConflict("412"),
        AssetRequestRejected("418", 418),
        AssetRequestRejected("422", 422),
        AssetContractViolation("GET /assets/A answered an invalid asset: status"),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status", "")),
)
async def test_answers_never_count_and_never_open_the_breaker(error):
    inner = Scripted([error] * 5)
    repo = resilient(inner, attempts=1, fail_max=1)
    for _ in range(5):
        with pytest.raises(type(error)):
            await repo.find_by_device_id("dev-1")
    assert repo.breaker.fail_counter == 0
    assert repo.breaker.state == "closed"
    assert inner.attempts == 5, "every call reached the asset system"


async def test_a_timeout_set_by_the_requests_own_budget_is_no_verdict():
    inner = Scripted([AssetUnavailable("down")])
    repo = resilient(inner, attempts=1, fail_max=3)
    with pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    assert repo.breaker.fail_counter == 1
    inner.delay = 5  # the budget ends first: nothing is learnt about the asset system
    with request_budget(0.05), pytest.raises(AssetBudgetSpent, match="budget is spent"):
        await repo.find_by_device_id("dev-1")
    assert repo.breaker.fail_counter == 1, "neither counted nor taken for an answer"


async def test_a_cancelled_caller_is_no_verdict_either_way():
    inner = Scripted([AssetUnavailable("down")])
    repo = resilient(inner, attempts=1, fail_max=3)
    with pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    inner.delay = 5
    task = asyncio.ensure_future(repo.find_by_device_id("dev-1"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert repo.breaker.fail_counter == 1, "pybreaker alone would have reset the count"


async def test_a_cancelled_trial_leaves_the_circuit_half_open_for_the_next_caller():
    inner = Scripted([AssetUnavailable("down")])
    repo = resilient(inner, attempts=1, fail_max=1, reset=0.05)
    with pytest.raises(AssetUnavailable):
        await repo.find_by_device_id("dev-1")
    assert repo.breaker.state == "open"
    await asyncio.sleep(0.1)
    inner.delay = 5
    trial = asyncio.ensure_future(repo.find_by_device_id("dev-1"))
    await asyncio.sleep(0.05)
    assert repo.breaker.state == "half-open"
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert repo.breaker.state == "half-open", "pybreaker alone would have closed it"
    inner.delay = 0
    await repo.find_by_device_id("dev-1")
    assert repo.breaker.state == "closed"


def test_is_outage_says_which_errors_count():
    assert is_outage(AssetUnavailable("transport"))
    assert is_outage(AssetUnavailable("429", status=429))
    assert is_outage(AssetUnavailable("503", status=503))
    assert not is_outage(AssetContractViolation("shape"))
    assert not is_outage(AssetBudgetSpent("budget"))
    assert not is_outage(AssetCircuitOpen("open"))
    assert not is_outage(AssetRequestRejected("400", 400))
    assert not is_outage(asyncio.CancelledError())


async def test_the_breaker_counts_only_what_is_failure_says():
    breaker = Breaker("dep", is_failure=lambda e: isinstance(e, OSError), fail_max=2)

    async def failing(error: BaseException) -> None:
        raise error

    with pytest.raises(OSError, match="down"):
        await breaker.call(lambda: failing(OSError("down")))
    assert breaker.fail_counter == 1
    with pytest.raises(NoVerdictError):
        await breaker.call(lambda: failing(NoVerdictError()))
    assert breaker.fail_counter == 1
    with pytest.raises(ValueError, match="an answer"):
        await breaker.call(lambda: failing(ValueError("an answer")))
    assert breaker.fail_counter == 0


class NoVerdictError(OSError, NoVerdict):
    """Would count as a failure, but is marked as saying nothing about the dependency."""


async def test_the_breaker_says_since_when_it_is_in_its_state():
    breaker = Breaker("dep", is_failure=lambda e: True, fail_max=2, reset_timeout_seconds=0.05)
    assert (breaker.state, breaker.state_since, breaker.fail_max) == ("closed", None, 2)
    assert breaker.reset_timeout_seconds == 0.05

    async def failing() -> None:
        raise OSError("down")

    async def answering() -> None:
        return None

    before = datetime.now(UTC)
    for _ in range(2):
        with pytest.raises(OSError, match="down"):
            await breaker.call(failing)
    opened = breaker.state_since
    assert breaker.state == "open"
    assert opened is not None
    assert before <= opened <= datetime.now(UTC)
    await asyncio.sleep(0.06)
    await breaker.call(answering)  # the trial: half-open, then closed
    assert breaker.state == "closed"
    assert breaker.state_since is not None
    assert breaker.state_since > opened
