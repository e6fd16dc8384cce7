"""An instance's CPU percentage as the controller measures it from the hosts' cumulative
``cpu_seconds``: over at least ``CPU_WINDOW``, within 0-100 % of the VM size's cores, and
measured afresh when the counter goes back (a new process)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cumulo.controller.ports import CPU_WINDOW, instance_usage


def test_a_percentage_needs_two_readings_a_window_apart() -> None:
    first = instance_usage({"cpu_seconds": 10.0, "memory_mb": 50.0, "cores": 2}, 100.0, None)
    assert first is not None and first.cpu_percent is None and first.memory_mb == 50.0
    soon = instance_usage({"cpu_seconds": 10.2, "cores": 2}, 100.0 + CPU_WINDOW / 2, first)
    assert soon is not None and soon.cpu_percent is None and soon.cpu_mark == first.cpu_mark
    later = instance_usage({"cpu_seconds": 11.0, "cores": 2}, 102.0, soon)
    assert later is not None and later.cpu_percent == 25.0  # 1 s of CPU in 2 s on 2 cores
    restarted = instance_usage({"cpu_seconds": 0.1, "cores": 2}, 104.0, later)
    assert restarted is not None and restarted.cpu_percent is None
    assert restarted.cpu_mark == (104.0, 0.1)
    assert instance_usage("not a mapping", 1.0, None) is None
    assert instance_usage({}, 1.0, None) == instance_usage({"cores": 1}, 1.0, None)


readings = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=10, allow_nan=False),
        st.floats(min_value=0, max_value=5, allow_nan=False),
    ),
    min_size=1,
    max_size=20,
)


@given(readings, st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]))
def test_percentages_stay_within_0_and_100(steps: list[tuple[float, float]], cores: float) -> None:
    now, used, usage = 0.0, 0.0, None
    for dt, more in steps:
        now += dt
        used += min(more, dt * cores)  # a process cannot use more than its cores
        usage = instance_usage({"cpu_seconds": used, "cores": cores}, now, usage)
        assert usage is not None
        assert usage.cpu_percent is None or 0.0 <= usage.cpu_percent <= 100.0
        assert usage.cpu_mark is not None and now - usage.cpu_mark[0] >= 0
