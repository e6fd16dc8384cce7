"""What ``make run`` relies on: ``cumulo run DIR --data-dir D`` creates D, starts the storage
service (on free ports when its ports are taken), prints both slots' URLs and the data
directory, leaves nothing behind on Ctrl-C, and a second run on the same D finds its deployment
again."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cumulo.cli.service_cmds import _with_storage

from .conftest import wait_until, write_tiny

pytestmark = pytest.mark.slow


def _processes_naming(directory: Path) -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(directory).encode() in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                continue
    return found


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="cumulo-run-test-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        for pid in _processes_naming(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def _run(src: Path, data: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cumulo.cli.main", "run", str(src), "--data-dir", str(data), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while not any(line.startswith("data directory: ") for line in lines):
        line = proc.stdout.readline()
        assert line or proc.poll() is None, f"cumulo run exited: {lines}"
        lines.append(line.rstrip("\n"))
        assert time.monotonic() < deadline, lines
    return proc, lines


def _ctrl_c(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_run_creates_the_data_dir_prints_both_slots_and_runs_again(base: Path) -> None:
    src = write_tiny(base / "svc", name="again", version="1", count=1)
    data = base / "not" / "yet" / "there"
    with socket.socket() as taken:  # the storage ports are taken: run uses free ones
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, lines = _run(src, data, "--storage-ports", f"{port},{port},{port}")
        try:
            text = "\n".join(lines)
            url = re.search(r"^Http: (http://\S+/)$", text, re.M)
            assert url, text
            assert re.search(
                r"^staging \(Http, empty until you deploy there\): http://127\.", text, re.M
            )
            assert f"data directory: {data.resolve()}" in text
            assert httpx.get(url.group(1), timeout=5).text == "version 1 Web_IN_0"
            storage = json.loads((data / "storage" / "ready.json").read_text())
            assert port not in (storage["blob"], storage["queue"], storage["table"])
        finally:
            assert _ctrl_c(proc) == 0
    wait_until(lambda: not _processes_naming(data), 10, "no process left after Ctrl-C")

    proc, lines = _run(src, data)  # the same service again: the deployment is found and kept
    try:
        assert any(line.startswith("Http: http://") for line in lines), lines
    finally:
        assert _ctrl_c(proc) == 0
    wait_until(lambda: not _processes_naming(data), 10, "no process left after Ctrl-C")
    assert (data / "cumulo.db").exists()


def test_development_storage_is_rewritten_only_off_its_ports() -> None:
    cscfg = '<Setting name="S" value="UseDevelopmentStorage=true" />'
    assert _with_storage(cscfg, None) == cscfg
    assert _with_storage(cscfg, {"blob": 10000, "queue": 10001, "table": 10002}) == cscfg
    moved = _with_storage(cscfg, {"host": "127.0.0.1", "blob": 5, "queue": 6, "table": 7})
    assert "UseDevelopmentStorage" not in moved
    assert "BlobEndpoint=http://127.0.0.1:5/devstoreaccount1;" in moved
    assert "TableEndpoint=http://127.0.0.1:7/devstoreaccount1;" in moved
