"""A real ``cumulo serve`` for end-to-end tests: one process and the data directory it owns.

Shared by ``tests/integration/controller/test_serve.py`` and ``tests/reliability/``. Whatever
a test starts here it stops: the platform with SIGINT (which stops every instance), then a
sweep of any process that names the data directory or works inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cumulo.client import Client


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``check`` every 50 ms until it returns something true (its value); fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children in their own sessions included), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def stop_tree(proc: subprocess.Popen[Any], grace: float = 60.0) -> None:
    """Stop a platform process a test started, whatever state the test left it in: Ctrl-C
    first (it stops what it started), then SIGKILL for it and everything still below it."""
    if proc.poll() is None:
        below = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            below |= descendants(proc.pid)
            proc.kill()
            proc.wait()
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Platform:
    """One ``cumulo serve`` process (``hosts`` host agents) and its data directory."""

    def __init__(
        self,
        data: Path,
        *,
        hosts: int = 1,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ):
        self.data = data
        self.hosts = hosts
        self.args = args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
        self.env["CUMULO_HOME"] = str(data)
        self.env.update(extra_env or {})
        self.log_path = data.parent / "serve.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "cumulo.cli.main", "serve", "--data-dir", str(self.data)),
                *("--hosts", str(self.hosts), "--listen", "127.0.0.1:0", "--storage-ports", "0"),
                *self.args,
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        info = wait_until(self._endpoint, 60, "cumulo serve to listen")
        token = (self.data / "api-token").read_text().strip()
        self.client = Client(info["url"], token, ca=info.get("ca"))

    def _endpoint(self) -> dict[str, Any] | None:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
        try:
            info = dict(json.loads((self.data / "api.json").read_text()))
        except (FileNotFoundError, ValueError):
            return None
        return info if info.get("pid") == self.proc.pid else None  # not a stale file

    def kill_9_and_restart(self) -> None:
        """kill -9 of the platform process only (host agents, load balancers, storage and
        instances keep running), then a new ``cumulo serve`` on the same data directory."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.client.close()
        self.start()

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``cumulo ARGS`` against this platform, whatever its exit code."""
        return subprocess.run(
            [sys.executable, "-m", "cumulo.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def logs(self) -> str:
        """The tail of serve's log and of the instance logs (for failure messages)."""
        parts = [self.log_path.read_text()[-2500:]]
        for log in sorted(self.data.glob("hosts/*/instances/*/logs/*.log"))[-8:]:
            parts.append(f"--- {log}\n{log.read_text()[-1500:]}")
        return "\n".join(parts)

    def pids(self) -> set[int]:
        """Every process this platform started: components name the data directory in their
        command line; role processes (sites) work inside it."""
        found = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if str(self.data).encode() in cmdline or cwd.startswith(str(self.data)):
                found.add(int(proc.name))
        return found

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def running(
    factory: Callable[[Path], Platform], prefix: str, *, strict: bool = False
) -> Iterator[Any]:
    """A platform from ``factory(data_dir)`` in a fresh directory outside pytest's 0700 tree (role
    users must enter it); afterwards every process it started is gone. ``strict``: fail the test
    when anything was still running after Ctrl-C."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix=prefix))
    os.chmod(base, 0o711)
    platform = factory(base / "data")
    left: set[int] = set()
    try:
        yield platform
    finally:
        platform.stop()
        left = platform.pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    assert not (strict and left), f"processes left after Ctrl-C of cumulo serve: {sorted(left)}"
