"""Cache layout paths and the retry policy's exact delays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cumulo.host.roleenv.builder import trim_logs
from cumulo.host.roleenv.layout import CacheLayout, is_attempt_of
from cumulo.host.roleenv.retry import RetryPolicy, RetryState


def test_layout_paths() -> None:
    layout = CacheLayout(Path("/var/lib/cumulo/envs"))
    assert layout.entry("python", "abc") == Path("/var/lib/cumulo/envs/python/abc")
    assert layout.build_dir("node", "abc", "0f0f0f") == Path("/var/lib/cumulo/envs/node/abc-0f0f0f")
    assert layout.staging_link("node", "abc", "0f0f0f").name == ".abc-0f0f0f.link"
    assert layout.lock("python", "abc") == Path("/var/lib/cumulo/envs/locks/python-abc.lock")
    assert layout.build_log == Path("/var/lib/cumulo/envs/builds.jsonl")
    with pytest.raises(ValueError, match="unknown environment kind"):
        layout.entry("ruby", "abc")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("abc-0f0f0f", True),
        (".abc-0f0f0f.link", True),
        ("abc", False),
        ("abcd-0f0f0f", False),
        ("abc-xyz123", False),
        (".abc-0f0f0f", False),
        ("abc-0f0f0f-0f0f0f", False),
    ],
)
def test_is_attempt_of(name: str, expected: bool) -> None:
    assert is_attempt_of(name, "abc") is expected


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=5, multiplier=2, max_delay=60)
    assert [policy.delay(n) for n in range(0, 7)] == [0.0, 5, 10, 20, 40, 60, 60]


def test_failures_schedule_the_next_attempt_and_success_resets() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=3, max_delay=100)
    state = RetryState()
    assert state.due(0.0)
    state = policy.after_failure(state, 10.0, "index down")
    assert state == RetryState(1, 11.0, "index down", False)
    assert not state.due(10.5) and state.due(11.0)
    state = policy.after_failure(state, 11.0, "index down")
    assert state.next_attempt_at == 14.0
    assert policy.after_success() == RetryState()


def test_giving_up_is_explicit() -> None:
    policy = RetryPolicy(initial_delay=1, max_attempts=2)
    state = policy.after_failure(RetryState(), 0.0, "e1")
    assert not state.gave_up
    state = policy.after_failure(state, 1.0, "e2")
    assert state.gave_up and state.failures == 2 and state.last_error == "e2"
    assert not state.due(1e9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"initial_delay": 10, "max_delay": 5},
        {"multiplier": 0.5},
        {"max_attempts": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_only_the_newest_attempt_logs_are_kept(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    (tmp_path / "logs").mkdir()
    for i in range(7):
        log = layout.log("python", "abc", f"{i:08x}")
        log.write_text(str(i))
        os.utime(log, ns=(i * 10**9, i * 10**9))
    other = layout.log("python", "abd", "00000000")
    other.write_text("other digest")
    trim_logs(layout, "python", "abc", keep=3)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "python-abc-00000004.log",
        "python-abc-00000005.log",
        "python-abc-00000006.log",
        "python-abd-00000000.log",
    ]
