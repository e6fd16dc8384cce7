"""The guestbook on the real platform: `cumulo run` deploys it (role venvs built from each
requirements.txt), a visitor signs through the production VIP, the worker role makes the
thumbnail, and an entry signed right after kill -9 of every worker and of one web instance
still gets its thumbnail. Ctrl-C leaves no process behind.

It builds the roles' environments with pip (from PyPI or the configured index), so it takes
20-60 s: it runs only with ``CUMULO_GUESTBOOK_E2E=1``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from .conftest import EXAMPLE, ROOT, start_storage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CUMULO_GUESTBOOK_E2E") != "1",
        reason="builds role environments with pip; set CUMULO_GUESTBOOK_E2E=1",
    ),
]


def _processes_under(directory: Path) -> dict[int, str]:
    """pid -> command line of every process whose working directory is inside ``directory``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found[int(entry.name)] = cmdline
    return found


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (20, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def _sign(url: str, name: str) -> None:
    response = httpx.post(
        f"{url}sign",
        data={"name": name, "message": "signed on the platform"},
        files={"picture": ("p.jpg", _jpeg(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 303, response.text[:500]


def _wait_for_thumbnails(url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            page = httpx.get(url, timeout=10).text
            if page.count('src="/thumbnails/') >= count:
                return
        except httpx.HTTPError:
            pass  # a connection to a killed instance: the next one goes elsewhere
        assert time.monotonic() < deadline, f"fewer than {count} thumbnails after {timeout} s"
        time.sleep(0.2)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The platform's data directory, outside pytest's root-only (0700) temporary tree: limited
    role users must be able to enter it."""
    path = Path(tempfile.mkdtemp(prefix="cumulo-guestbook-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_sign_kill_every_worker_and_a_web_instance_then_sign_again(
    tmp_path: Path, data_dir: Path
) -> None:
    storage = start_storage(tmp_path)
    data = data_dir
    cscfg = tmp_path / "ServiceConfiguration.Test.cscfg"
    cscfg.write_text(
        (EXAMPLE / "ServiceConfiguration.Local.cscfg")
        .read_text()
        .replace("UseDevelopmentStorage=true", storage.connection_string.replace("&", "&amp;"))
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cumulo.cli.main",
                "run",
                str(EXAMPLE),
                "--config",
                str(cscfg),
                "--data-dir",
                str(data),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not (match := re.search(r"HttpIn: (http://\S+/)", log.read_text())):
            assert run.poll() is None, log.read_text()[-3000:]
            assert "CreateDeployment: Failed" not in log.read_text(), log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        url = match.group(1)
        _sign(url, "first")
        _wait_for_thumbnails(url, 1, 30)

        processes = _processes_under(data)
        workers = [pid for pid, cmd in processes.items() if "cumulo.sdk.run worker:Worker" in cmd]
        assert len(workers) == 2, processes
        sites = {pid for pid, cmd in processes.items() if "cumulo_sitehost" in cmd}
        servers = sorted(pid for pid in sites if _parent(pid) not in sites)  # one per instance
        assert len(servers) == 2, processes
        for pid in [*workers, servers[0]]:
            os.kill(pid, signal.SIGKILL)
        _sign(url, "second")  # acknowledged while no worker runs
        _wait_for_thumbnails(url, 2, 60)
        assert 'source="role setting StorageConnectionString"' in log.read_text()
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        storage.stop()
    leftover = _processes_under(data)
    assert leftover == {}, leftover
