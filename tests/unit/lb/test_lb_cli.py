from __future__ import annotations

import subprocess
import sys

from cumulo.lb.proxy import bind_walking, candidate_ports


def _cumulo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_lb_help_lists_the_commands() -> None:
    result = _cumulo("lb", "--help")
    assert result.returncode == 0
    for command in ("serve", "routes", "set-routes", "swap", "metrics"):
        assert command in result.stdout


def test_serve_without_a_token_is_a_sentence_not_a_traceback() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "CUMULO_LB_TOKEN"}
    result = _cumulo("lb", "serve", "--api", "127.0.0.1:0", env=env)
    assert result.returncode == 5
    assert "no load balancer token" in result.stderr
    assert "Traceback" not in result.stderr


def test_swap_against_no_lb_says_it_cannot_reach_it() -> None:
    result = _cumulo("lb", "swap", "--api", "127.0.0.1:1", "--token", "t")
    assert result.returncode != 0
    assert "cannot reach the load balancer API" in result.stderr


def test_candidate_ports_walk_upwards() -> None:
    assert candidate_ports(0) == [0]
    assert candidate_ports(80, 3) == [80, 81, 82]
    assert candidate_ports(65535, 5) == [65535]


def test_bind_walking_skips_a_taken_port() -> None:
    first = bind_walking("127.0.0.1", 0)
    try:
        taken = first.getsockname()[1]
        second = bind_walking("127.0.0.1", taken)
        try:
            assert taken < second.getsockname()[1] < taken + 100
        finally:
            second.close()
    finally:
        first.close()
