"""The restart policy: exact delays, bounds, jitter range, reset after a stable run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.clock import FakeClock
from cumulo.state.restart import (
    Failure,
    FailureKind,
    RestartHistory,
    RestartPolicy,
    next_action,
    raw_delay,
)
from cumulo.state.states import InstanceState

NO_JITTER = RestartPolicy(jitter=0.0)


def crash(started_at: float | None, code: int = 1) -> Failure:
    return Failure(FailureKind.EXITED, started_at, code, f"exited {code}")


def test_delays_double_from_half_a_second_to_the_cap() -> None:
    clock = FakeClock()
    history = RestartHistory()
    delays = []
    states = []
    for _ in range(10):
        started = clock.monotonic()
        clock.advance(0.5)
        d = next_action(NO_JITTER, history, crash(started), now=clock.monotonic(), rand=0.5)
        history = d.history
        delays.append(d.delay)
        states.append(d.state)
        clock.advance(d.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert states[:2] == [InstanceState.RESTARTING] * 2
    assert set(states[2:]) == {InstanceState.CYCLING}
    assert history.consecutive == 10 and history.last_exit_code == 1


def test_a_stable_run_resets_the_count() -> None:
    history = RestartHistory(consecutive=7, total=7)
    d = next_action(NO_JITTER, history, crash(0.0), now=1.0, rand=0.0)
    assert d.delay == 0.5 and d.state is InstanceState.RESTARTING
    assert d.history.consecutive == 1 and d.history.total == 8


def test_a_short_run_does_not_reset() -> None:
    history = RestartHistory(consecutive=7, total=7)
    d = next_action(NO_JITTER, history, crash(0.0), now=0.9, rand=0.0)
    assert d.history.consecutive == 8 and d.delay == 60.0


def test_startup_task_loops_show_failed_starting() -> None:
    history = RestartHistory(consecutive=2)
    d = next_action(
        NO_JITTER,
        history,
        Failure(FailureKind.STARTUP_TASK, 0.0, 3, "startup task 1 exited 3"),
        now=1.0,
        rand=0.0,
    )
    assert d.state is InstanceState.FAILED_STARTING
    assert d.reason.startswith("startup task 1 exited 3; crash loop")


def test_requested_recycle_is_not_a_failure() -> None:
    history = RestartHistory(consecutive=2, total=2)
    d = next_action(
        NO_JITTER, history, Failure(FailureKind.RECYCLE, 0.0, None, "asked"), now=0.5, rand=0.0
    )
    assert d.delay == 0.0 and d.state is InstanceState.RESTARTING
    assert d.history.consecutive == 2 and d.history.total == 3


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(base=0)
    with pytest.raises(ValueError):
        RestartPolicy(jitter=1.0)
    with pytest.raises(ValueError):
        next_action(RestartPolicy(), RestartHistory(), crash(0.0), now=0.0, rand=1.0)


policies = st.builds(
    RestartPolicy,
    base=st.floats(0.01, 5.0),
    factor=st.floats(1.0, 4.0),
    cap=st.floats(5.0, 120.0),
    jitter=st.floats(0.0, 0.9),
    reset_after=st.floats(1.0, 600.0),
    cycling_after=st.integers(1, 10),
)


@given(
    policies,
    st.integers(0, 200),
    st.floats(0.0, 0.999999),
    st.floats(0.0, 1000.0),
    st.floats(0.0, 1000.0),
)
def test_delay_bounds_and_jitter_range(
    policy: RestartPolicy, before: int, rand: float, started: float, ran: float
) -> None:
    history = RestartHistory(consecutive=before, total=before)
    now = started + ran
    d = next_action(policy, history, crash(started), now=now, rand=rand)
    n = d.history.consecutive
    raw = raw_delay(policy, n)
    assert 0 < d.delay <= policy.cap
    assert raw * (1 - policy.jitter) - 1e-9 <= d.delay <= raw * (1 + policy.jitter) + 1e-9
    assert n == (1 if now - started >= policy.reset_after else before + 1)
    looping = n >= policy.cycling_after
    assert (d.state is InstanceState.CYCLING) == looping
    assert d.history.total == before + 1


@given(policies, st.integers(1, 100))
def test_raw_delay_grows_and_never_exceeds_the_cap(policy: RestartPolicy, n: int) -> None:
    assert raw_delay(policy, n) <= raw_delay(policy, n + 1) <= policy.cap
    assert raw_delay(policy, 1) == policy.base


@given(policies, st.integers(0, 200), st.floats(0.0, 1000.0))
def test_failures_before_the_entry_point_never_reset_the_count(
    policy: RestartPolicy, before: int, ran: float
) -> None:
    history = RestartHistory(consecutive=before, total=before)
    for kind in (FailureKind.STARTUP_TASK, FailureKind.PREPARE):
        d = next_action(policy, history, Failure(kind, 0.0, 1, "failed"), now=ran, rand=0.5)
        assert d.history.consecutive == before + 1
