"""The GPU circuit breaker's state machine on an injected clock, and the NVENC session slots."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import pytest

from gpu_worker.breaker import BreakerState, CircuitBreaker, NvencSessions
from gpu_worker.engine import RenderCancelled

LOST = "NVENC session lost"
JOIN_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProbe:
    """Answers with the queued results (None: the GPU works) and counts its calls."""

    def __init__(self, *results: str | None) -> None:
        self.results = list(results)
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.results.pop(0)


def breaker(clock: Clock, probe: FakeProbe | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        1, threshold=3, window_s=60.0, cooldown_s=30.0, probe=probe or FakeProbe(), clock=clock
    )


def fail(b: CircuitBreaker, clock: Clock, times: int, every_s: float = 1.0) -> None:
    for _ in range(times):
        b.record_failure(LOST)
        clock.now += every_s


def test_it_opens_after_the_threshold_of_failures_within_the_window() -> None:
    clock = Clock()
    b = breaker(clock)

    fail(b, clock, 2)
    assert (b.state, b.healthy) == (BreakerState.CLOSED, True)
    b.record_failure(LOST)

    assert (b.state, b.healthy) == (BreakerState.OPEN, False)
    assert b.admit() == "GPU 1 circuit open after 3 failures: NVENC session lost"
    assert b.describe() == {
        "gpu_index": 1,
        "state": "open",
        "failures": 3,
        "threshold": 3,
        "opened_at": 1002.0,
        "retry_at": 1032.0,
        "last_error": LOST,
    }


def test_failures_spread_wider_than_the_window_never_open_it() -> None:
    clock = Clock()
    b = breaker(clock)

    fail(b, clock, 10, every_s=30.0)

    assert b.state is BreakerState.CLOSED
    assert b.admit() is None
    assert b.describe()["failures"] == 1  # only the one at 1270 s is inside (1240, 1300]


def test_after_the_cool_down_it_is_half_open_and_counts_as_healthy() -> None:
    clock = Clock()
    probe = FakeProbe()
    b = breaker(clock, probe)
    fail(b, clock, 3, every_s=0.0)

    clock.now += 29.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.1

    assert (b.state, b.healthy) == (BreakerState.HALF_OPEN, True)
    assert probe.calls == 0


def test_half_open_a_working_probe_closes_it_and_forgets_the_failures() -> None:
    clock = Clock()
    probe = FakeProbe(None)
    b = breaker(clock, probe)
    fail(b, clock, 3, every_s=0.0)
    clock.now += 30.0

    assert b.admit() is None

    assert probe.calls == 1
    assert b.describe() == {
        "gpu_index": 1,
        "state": "closed",
        "failures": 0,
        "threshold": 3,
        "opened_at": None,
        "retry_at": None,
        "last_error": LOST,
    }


def test_half_open_a_failing_probe_opens_it_for_another_cool_down() -> None:
    clock = Clock()
    probe = FakeProbe("NVENC not present on this GPU (e.g. H100)")
    b = breaker(clock, probe)
    fail(b, clock, 3, every_s=0.0)
    clock.now += 30.0

    reason = b.admit()

    assert reason == "GPU 1 circuit open after 4 failures: NVENC not present on this GPU (e.g. H100)"
    assert (b.state, b.describe()["retry_at"]) == (BreakerState.OPEN, clock.now + 30.0)
    assert b.admit() == reason
    assert probe.calls == 1


def test_a_probe_that_raises_counts_as_a_failed_probe() -> None:
    clock = Clock()

    def broken() -> str | None:
        raise RuntimeError("driver gone")

    b = CircuitBreaker(0, threshold=1, window_s=60.0, cooldown_s=30.0, probe=broken, clock=clock)
    b.record_failure(LOST)
    clock.now += 30.0

    assert b.admit() == "GPU 0 circuit open after 2 failures: GPU probe failed: driver gone"


def test_a_job_over_the_session_limit_waits_for_a_free_slot() -> None:
    sessions = NvencSessions(1)
    entered = threading.Event()

    def second_job() -> None:
        with sessions.hold():
            entered.set()

    with sessions.hold():
        thread = threading.Thread(target=second_job)
        thread.start()
        assert not entered.wait(0.5)
    thread.join(JOIN_S)

    assert entered.is_set()


def test_a_cancelled_job_stops_waiting_for_a_slot() -> None:
    sessions = NvencSessions(1)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def waiting_job() -> None:
        try:
            with sessions.hold(cancel):
                pass
        except RenderCancelled as exc:
            outcome.append(exc)

    with sessions.hold():
        thread = threading.Thread(target=waiting_job)
        thread.start()
        cancel.set()
        thread.join(JOIN_S)

    assert [type(e) for e in outcome] == [RenderCancelled]
    with sessions.hold():  # the cancelled wait took no slot
        pass


@pytest.mark.parametrize("limit", [1, 2])
def test_the_limit_is_the_number_of_jobs_holding_a_slot_at_once(limit: int) -> None:
    sessions = NvencSessions(limit)
    cancel = threading.Event()
    cancel.set()

    with ExitStack() as held:
        for _ in range(limit):
            held.enter_context(sessions.hold(cancel))  # free slots are taken at once, cancel or not
        with pytest.raises(RenderCancelled), sessions.hold(cancel):
            pass
