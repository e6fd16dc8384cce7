"""Fixtures: a real storage service process (or Azurite) and SDK clients pointed at it.

By default the suite runs against cumulo's service, started as a real process on port 0.
``CUMULO_STORAGE_TARGET=azurite`` runs the same tests against Azurite instead (see
docs/storage.md, "Conformance suite"): the fixture starts ``bench/.work/node_modules/.bin/azurite``
on free ports of 127.0.0.1; tests marked ``cumulo_only`` (durability, cumulo-specific limits) are
skipped there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
TARGET = os.environ.get("CUMULO_STORAGE_TARGET", "cumulo")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cumulo_only: not run against Azurite")
    config.addinivalue_line(
        "markers", "azurite_differs(reason): a known Azurite difference (xfail there)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TARGET != "azurite":
        return
    skip = pytest.mark.skip(reason="cumulo-only behaviour (CUMULO_STORAGE_TARGET=azurite)")
    for item in items:
        if "cumulo_only" in item.keywords:
            item.add_marker(skip)
        differs = item.get_closest_marker("azurite_differs")
        if differs is not None:
            item.add_marker(pytest.mark.xfail(reason=f"Azurite: {differs.args[0]}", strict=True))


@dataclass
class Endpoints:
    host: str
    blob: int
    queue: int
    table: int
    account: str = DEV_ACCOUNT
    key: str = DEV_KEY

    def connection_string(self, key: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={key or self.key};"
            f"BlobEndpoint=http://{self.host}:{self.blob}/{self.account};"
            f"QueueEndpoint=http://{self.host}:{self.queue}/{self.account};"
            f"TableEndpoint=http://{self.host}:{self.table}/{self.account};"
        )

    def url(self, service: str) -> str:
        port = {"blob": self.blob, "queue": self.queue, "table": self.table}[service]
        return f"http://{self.host}:{port}/{self.account}"


class StorageProcess:
    """A `cumulo storage serve` process on port 0 with its data directory."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoints: Endpoints | None = None

    def start(self, ports: tuple[int, int, int] = (0, 0, 0)) -> Endpoints:
        ready = self.data_dir.parent / f"{self.data_dir.name}.ready.json"
        ready.unlink(missing_ok=True)
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cumulo.cli.main",
                "storage",
                "serve",
                "--data",
                str(self.data_dir),
                "--blob-port",
                str(ports[0]),
                "--queue-port",
                str(ports[1]),
                "--table-port",
                str(ports[2]),
                "--ready-file",
                str(ready),
                *self.args,
            ],
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"storage exited with {self.proc.returncode}; see {self.log.name}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("storage did not become ready in 20 s")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        self.endpoints = Endpoints(info["host"], info["blob"], info["queue"], info["table"])
        return self.endpoints

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and not self.log.closed:
            self.log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


@pytest.fixture(scope="session")
def storage() -> Iterator[Endpoints]:
    """The service under test, shared by the conformance tests (each uses its own names)."""
    with tempfile.TemporaryDirectory(prefix="cumulo-storage-") as tmp:
        if TARGET == "azurite":
            exe = ROOT / "bench" / ".work" / "node_modules" / ".bin" / "azurite"
            ports = [_free_port(), _free_port(), _free_port()]
            proc = subprocess.Popen(
                [
                    *(str(exe), "--silent", "--disableTelemetry", "--skipApiVersionCheck"),
                    *("--location", tmp, "--blobPort", str(ports[0])),
                    *("--queuePort", str(ports[1]), "--tablePort", str(ports[2])),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 30
                for port in ports:
                    _wait_port(port, deadline, proc)
                yield Endpoints("127.0.0.1", *ports)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            return
        server = StorageProcess(Path(tmp) / "data")
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture
def storage_process(tmp_path: Path) -> Iterator[StorageProcess]:
    """A private server process for tests that kill or restart it."""
    server = StorageProcess(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test (valid for queues, containers and tables)."""
    import hashlib

    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    return f"t{digest}"
