from __future__ import annotations

import subprocess
import sys


def _cumulo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_the_command() -> None:
    result = _cumulo("--help")
    assert result.returncode == 0
    assert "cumulo runs Azure Cloud Services applications" in result.stdout


def test_unknown_command_is_a_usage_error_not_a_traceback() -> None:
    result = _cumulo("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such command" in result.stderr
