"""What an instance uses without cgroups, read from /proc: a session leader's CPU time counts
its children's (also once they exited), and resident memory is the session's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from cumulo.host.usage import process_usage


def test_a_session_counts_its_childrens_cpu_and_memory() -> None:
    burner = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        + repr("import time\nwhile time.process_time() < 0.6: pass\ntime.sleep(30)")
        + "]); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", burner], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        seen: dict[str, float] = {}
        while seen.get("cpu_seconds", 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = process_usage([proc.pid]).get(proc.pid, {})
        assert seen["cpu_seconds"] >= 0.5, seen  # the child burns 0.6 s, counted for the leader
        assert 5 < seen["memory_mb"] < 500, seen  # two Python interpreters' resident memory
        assert process_usage([2**22 + 1]) == {}  # no such process
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
