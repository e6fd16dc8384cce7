"""Fixtures for the load balancer's real-socket tests: backend processes, LB processes, a client.

Everything binds port 0 on 127.0.0.1 (both slots use 127.0.0.1 here, told apart by port), so the
tests can run on a shared machine; every process a test starts is stopped at its end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

BACKEND_APP = Path(__file__).with_name("backend_app.py")
TOKEN = "test-token-123"


def fetch(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """One request on a fresh connection; the response body (raises OSError on failure)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(sock)


def read_response(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} bytes")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        body += chunk
    return body.decode()


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Backends:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(
        self, name: str, sick_file: Path | None = None, port: int = 0, health_delay: float = 0
    ) -> tuple[int, subprocess.Popen[str]]:
        args = [sys.executable, str(BACKEND_APP), name]
        if sick_file is not None:
            args += ["--sick-file", str(sick_file)]
        env = {**os.environ, "BACKEND_PORT": str(port), "BACKEND_HEALTH_DELAY": str(health_delay)}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        return port, proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


class Lb:
    """A running `cumulo lb serve` process and a client of its API."""

    def __init__(self, state_file: Path | None, extra: list[str]) -> None:
        args = [sys.executable, "-m", "cumulo.cli.main", "lb", "serve", "--api", "127.0.0.1:0"]
        args += ["--token", TOKEN, "--staging-address", "127.0.0.1", *extra]
        if state_file is not None:
            args += ["--state-file", str(state_file)]
        env = {**os.environ, "CUMULO_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the LB did not start (exit {self.proc.wait(10)})")
        ready = json.loads(line)
        self.api = ready["api"]
        self.boot_id = ready["bootId"]
        self.http = httpx.Client(
            base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def put(self, table: dict[str, Any]) -> dict[str, Any]:
        response = self.http.put("/v1/routes", json=table)
        assert response.status_code == 200, response.text
        return response.json()

    def swap(self) -> dict[str, Any]:
        response = self.http.post("/v1/swap", json={})
        assert response.status_code == 200, response.text
        return response.json()

    def port(self, slot: str, endpoint: str) -> int:
        listeners = self.http.get("/v1/listeners").json()["listeners"]
        return next(x["port"] for x in listeners if x["slot"] == slot and x["endpoint"] == endpoint)

    def metric(self, name: str, **labels: str) -> float:
        text = self.http.get("/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no metric {name}{{{want}}}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = Backends()
    yield b
    b.stop_all()


@pytest.fixture
def start_lb() -> Iterator[Callable[..., Lb]]:
    started: list[Lb] = []

    def start(state_file: Path | None = None, extra: list[str] | None = None) -> Lb:
        lb = Lb(state_file, extra or [])
        started.append(lb)
        return lb

    yield start
    for lb in started:
        lb.stop()


def endpoint(ports: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {
        "publicPort": 0,
        "protocol": "http",
        "backends": [
            {"instance": name, "address": "127.0.0.1", "port": port} for name, port in ports.items()
        ],
        **extra,
    }


@pytest.fixture
def helpers() -> Any:
    class H:
        pass

    h = H()
    h.fetch = fetch  # type: ignore[attr-defined]
    h.read_response = read_response  # type: ignore[attr-defined]
    h.wait_until = wait_until  # type: ignore[attr-defined]
    h.endpoint = endpoint  # type: ignore[attr-defined]
    return h
