"""The guestbook on the real platform, started the way `make run` starts it
(``cumulo run examples/guestbook --data-dir DIR``): the role environments are built from each
role's requirements.txt with pip, the storage service is the platform's own, and the production
URL is the one `cumulo run` prints. One platform serves every test of this module (building the
role environments is the slow part, 10-20 s), and the last test stops it with Ctrl-C.

- A visitor signs in headless Chromium (Debian's /usr/bin/chromium driven by Playwright; `make
  test` installs it): name, message and a JPEG through the file input, a click on Sign, the entry
  on the page after the redirect, and its thumbnail, made by the worker role, loaded in the page.
- A visitor signs over plain HTTP; every worker and one web instance are killed with kill -9; an
  entry signed right then still gets its thumbnail.
- Ctrl-C stops the platform and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageDraw

from .conftest import ROOT, BrowserPage, poll, thumbnail_loaded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEPLOY_TIMEOUT = 240.0
"""Seconds for `cumulo run` to build the role environments (pip, from PyPI) and print the URL."""


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
    """An 800 x 600 JPEG with a pattern, so the thumbnail is recognisable in a screenshot."""
    image = Image.new("RGB", (800, 600), (20, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((250, 150, 550, 450), fill=(250, 200, 40))
    draw.rectangle((0, 500, 800, 600), fill=(30, 160, 80))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


@dataclass
class Guestbook:
    """`cumulo run examples/guestbook --data-dir DIR`, running, with its production URL."""

    run: subprocess.Popen[bytes]
    url: str
    data: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as a person stops `make run`; the exit code."""
        if self.run.poll() is None:
            self.run.send_signal(signal.SIGINT)
            try:
                self.run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.run.kill()
                self.run.wait()
        return self.run.returncode


def _start(tmp: Path) -> Guestbook:
    # The data directory lies outside pytest's root-only (0700) temporary tree: limited role
    # users must be able to enter it.
    data = Path(tempfile.mkdtemp(prefix="cumulo-guestbook-"))
    data.chmod(0o755)
    log = tmp / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cumulo.cli.main",
                "run",
                "examples/guestbook",
                "--data-dir",
                str(data),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    book = Guestbook(run, "", data, log)
    try:
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while not (
            match := re.search(r"^production:\nHttpIn: (http://\S+/)$", book.output(), re.M)
        ):
            assert run.poll() is None, book.output()[-3000:]
            assert "CreateDeployment: Failed" not in book.output(), book.output()[-3000:]
            assert time.monotonic() < deadline, book.output()[-3000:]
            time.sleep(0.2)
    except BaseException:
        book.stop()
        shutil.rmtree(data, ignore_errors=True)
        raise
    book.url = match.group(1)
    # No wait here: `cumulo run` prints the URL only once every instance is in the load
    # balancer's rotation (its custom probe passed once), so the first visit must answer.
    return book


@pytest.fixture(scope="module")
def guestbook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guestbook]:
    book = _start(tmp_path_factory.mktemp("guestbook-run"))
    try:
        yield book
    finally:
        book.stop()
        for pid in _processes_under(book.data):  # only after a failed stop; the test says so
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(book.data, ignore_errors=True)


def _entry_html(page: str, name: str) -> str | None:
    """The <li> of the entry signed by ``name`` (names are unique per test)."""
    match = re.search(
        rf'<li class="entry">(?:(?!</li>).)*<strong>{re.escape(name)}</strong>.*?</li>', page
    )
    return match.group(0) if match else None


def _has_thumbnail(url: str, name: str) -> bool:
    try:
        page = httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return False  # a connection to a killed instance: the next one goes elsewhere
    entry = _entry_html(page, name)
    return entry is not None and 'src="/thumbnails/' in entry


def test_a_visitor_signs_with_a_picture_in_a_browser(
    guestbook: Guestbook, browser_page: BrowserPage, tmp_path: Path
) -> None:
    page = browser_page.page
    picture = tmp_path / "holiday.jpg"
    picture.write_bytes(_jpeg())
    name = f"Ada {uuid.uuid4().hex[:6]}"
    message = "Signed in a real browser, picture attached."

    page.goto(guestbook.url)
    assert page.title() == "Guestbook"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Message").fill(message)
    page.get_by_label("Picture").set_input_files(picture)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign").click()

    # Post/redirect/get: the browser is back on the guestbook, not on /sign.
    assert urlsplit(page.url).path == "/", page.url
    entry = page.locator("li.entry", has_text=name)
    assert entry.count() == 1, page.content()
    assert message in entry.inner_text()

    # The worker role makes the thumbnail; the page shows it once it is there.
    poll(lambda: thumbnail_loaded(page, name), 60, f"the thumbnail of {name}'s entry was not shown")
    image = page.locator("li.entry", has_text=name).locator("img")
    assert image.get_attribute("alt") == f"picture from {name}"
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [160, 120]  # of 800 x 600
    screenshot = tmp_path / "guestbook.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert browser_page.problems == [], browser_page.problems


def _sign(url: str, name: str) -> None:
    response = httpx.post(
        f"{url}sign",
        data={"name": name, "message": "signed on the platform"},
        files={"picture": ("p.jpg", _jpeg(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 303, response.text[:500]


def test_sign_kill_every_worker_and_a_web_instance_then_sign_again(guestbook: Guestbook) -> None:
    url = guestbook.url
    first, second = (f"{n} {uuid.uuid4().hex[:6]}" for n in ("first", "second"))
    _sign(url, first)
    poll(lambda: _has_thumbnail(url, first), 30, "no thumbnail for the first entry")

    processes = _processes_under(guestbook.data)
    workers = [pid for pid, cmd in processes.items() if "cumulo.sdk.run worker:Worker" in cmd]
    assert len(workers) == 2, processes
    sites = {pid for pid, cmd in processes.items() if "cumulo_sitehost" in cmd}
    servers = sorted(pid for pid in sites if _parent(pid) not in sites)  # one per instance
    assert len(servers) == 2, processes
    for pid in [*workers, servers[0]]:
        os.kill(pid, signal.SIGKILL)
    _sign(url, second)  # acknowledged while no worker runs
    poll(lambda: _has_thumbnail(url, second), 60, "no thumbnail for the entry signed meanwhile")
    assert 'source="role setting StorageConnectionString"' in guestbook.output()


def test_ctrl_c_stops_everything(guestbook: Guestbook) -> None:
    assert _processes_under(guestbook.data), "the platform's processes should be running"
    assert guestbook.stop() == 0, guestbook.output()[-3000:]
    leftover = _processes_under(guestbook.data)
    assert leftover == {}, leftover
