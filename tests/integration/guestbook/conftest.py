"""Fixtures for the guestbook example: a real storage service, the web role served over HTTP
the way the platform hosts it (uvicorn + a2wsgi, on port 0), and the worker role's store.

The role folders are put on ``sys.path`` so their modules (``app``, ``webstore``, ``worker``,
``thumbnail``, …) import as they do in an instance's approot.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ...browser import BrowserPage, chromium_page  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "guestbook"
for role in ("WorkerRole", "WebRole"):
    if str(EXAMPLE / role) not in sys.path:
        sys.path.insert(0, str(EXAMPLE / role))

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


ACCOUNTS = 40
"""Accounts of the shared storage process: the guestbook's names are fixed, so each test gets an
account of its own (accounts are separate namespaces) instead of a process of its own."""


@dataclass
class Storage:
    """A `cumulo storage serve` process on port 0, seen through one of its accounts."""

    proc: subprocess.Popen[bytes]
    host: str
    blob: int
    queue: int
    table: int
    log: Path
    account: str = DEV_ACCOUNT
    key: str = DEV_KEY

    @property
    def connection_string(self) -> str:
        """The explicit form the platform gives a role (docs/storage.md)."""
        a = self.account
        return (
            f"DefaultEndpointsProtocol=http;AccountName={a};AccountKey={self.key};"
            f"BlobEndpoint=http://{self.host}:{self.blob}/{a};"
            f"QueueEndpoint=http://{self.host}:{self.queue}/{a};"
            f"TableEndpoint=http://{self.host}:{self.table}/{a};"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_storage(tmp: Path, accounts: dict[str, str] | None = None) -> Storage:
    ready = tmp / "storage.ready.json"
    log = tmp / "storage.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cumulo.cli.main",
                "storage",
                "serve",
                "--data",
                str(tmp / "storage"),
                "--blob-port",
                "0",
                "--queue-port",
                "0",
                "--table-port",
                "0",
                "--durability",
                "normal",
                "--ready-file",
                str(ready),
                *(f"--account={name}:{key}" for name, key in (accounts or {}).items()),
            ],
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"storage exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("storage did not become ready in 20 s")
        time.sleep(0.01)
    info = json.loads(ready.read_text())
    return Storage(proc, info["host"], info["blob"], info["queue"], info["table"], log)


@dataclass
class AccountPool:
    server: Storage
    keys: dict[str, str]
    free: list[str]


@pytest.fixture(scope="session")
def shared_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountPool]:
    keys = {f"guestbook{i:02d}": base64.b64encode(os.urandom(64)).decode() for i in range(ACCOUNTS)}
    server = start_storage(tmp_path_factory.mktemp("guestbook-storage"), keys)
    try:
        yield AccountPool(server, keys, list(keys))
    finally:
        server.stop()


@pytest.fixture
def storage(shared_storage: AccountPool, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, empty account on the shared storage process (a private process if none is left)."""
    if shared_storage.free:
        name = shared_storage.free.pop(0)
        yield dataclasses.replace(
            shared_storage.server, account=name, key=shared_storage.keys[name]
        )
        return
    private = start_storage(tmp_path)
    try:
        yield private
    finally:
        private.stop()


@pytest.fixture
def private_storage(tmp_path: Path) -> Iterator[Storage]:
    """A storage process of the test's own (for tests that stop it)."""
    server = start_storage(tmp_path)
    try:
        yield server
    finally:
        server.stop()


class WebServer:
    """The web role's WSGI app behind uvicorn + a2wsgi (as the host agent serves sites)."""

    def __init__(self, wsgi_app: object) -> None:
        import uvicorn
        from a2wsgi import WSGIMiddleware

        config = uvicorn.Config(
            WSGIMiddleware(wsgi_app),  # type: ignore[arg-type]
            host="127.0.0.1",
            port=0,
            loop="asyncio",
            http="httptools",
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="guestbook-web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def web(storage: Storage) -> Iterator[WebServer]:
    import app

    server = WebServer(app.make_app(storage.connection_string))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker_store(storage: Storage):  # type: ignore[no-untyped-def]
    import worker

    store = worker.WorkerStore(storage.connection_string)
    store.ensure()
    return store


@pytest.fixture
def browser_page() -> Iterator[BrowserPage]:
    """A fresh headless Chromium with one page (``tests/browser.py``); closed afterwards."""
    with chromium_page() as seen:
        yield seen


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Call ``check`` until it returns True; fail with '``what`` after N s' at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} after {timeout:.0f} s"
        time.sleep(interval)


def thumbnail_loaded(page: Any, name: str) -> bool:
    """True once the entry signed by ``name`` shows its thumbnail, loaded (naturalWidth > 0)."""
    from playwright.sync_api import Error

    try:
        return bool(
            page.locator("li.entry", has_text=name)
            .locator("img")
            .evaluate_all("imgs => imgs.some(i => i.complete && i.naturalWidth > 0)")
        )
    except Error:
        return False  # the page is being replaced (a reload without scripts): ask again
