"""Custom probe evaluation: readiness leaves after timeout, liveness after twice that."""

from __future__ import annotations

from cumulo.state import health


def test_readiness_and_liveness_windows() -> None:
    s = health.ProbeStatus(interval_s=5, timeout_s=11, liveness_factor=2.0, since=0.0)
    assert not health.routable(s, 1.0)  # never succeeded yet
    s = health.record(s, True, 5.0)
    assert health.routable(s, 15.9)
    s = health.record(s, False, 10.0, "refused")
    s = health.record(s, False, 15.0, "refused")
    assert s.consecutive_failures == 2 and s.last_error == "refused"
    assert health.routable(s, 15.9) and not health.routable(s, 16.0)
    assert not health.hung(s, 26.9) and health.hung(s, 27.0)
    s = health.record(s, True, 20.0)
    assert health.routable(s, 20.0) and s.consecutive_failures == 0


def test_liveness_counts_from_the_start_when_never_ok() -> None:
    s = health.ProbeStatus(interval_s=1, timeout_s=2, liveness_factor=2.0, since=100.0)
    assert not health.hung(s, 103.9) and health.hung(s, 104.0)
