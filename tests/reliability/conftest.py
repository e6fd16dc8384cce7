"""The reliability harness: a real ``cumulo serve`` (controller + API, a host agent, a load
balancer per service, the storage service) on loopback, a tiny 3-instance web role, and a small
bounded load generator that counts every request through the production VIP.

Everything a test starts it stops: the platform with SIGINT (which stops every instance), then a
sweep of any process that names the test's data directory or works inside it
(``tests/platform_harness.py``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..platform_harness import Platform, running, wait_until  # type: ignore[import-not-found]

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_tiny(root: Path, *, name: str, version: str, count: int = 3, port: int = 0) -> Path:
    """The tiny service (fixtures/tiny): one web role whose WSGI site answers ``version V
    INSTANCE``, 3 update domains, ``count`` instances, its input endpoint on ``port``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Web").mkdir(exist_ok=True)
    values = {"{name}": name, "{port}": str(port or free_port()), "{count}": str(count)}
    for file in ("ServiceDefinition.csdef", "ServiceConfiguration.cscfg"):
        text = (FIXTURE / file).read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        (root / file).write_text(text)
    app = (FIXTURE / "Web" / "app.py").read_text().replace("{version}", version)
    (root / "Web" / "app.py").write_text(app)
    return root


def tiny_versions(tmp: Path, name: str) -> tuple[Path, Path]:
    """Versions 1 and 2 of the tiny service, on the same public port."""
    port = free_port()
    return (
        write_tiny(tmp / f"{name}-v1", name=name, version="1", port=port),
        write_tiny(tmp / f"{name}-v2", name=name, version="2", port=port),
    )


class Serve(Platform):
    """``cumulo serve`` with one host agent, and the steps the reliability cases take."""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = self.run_cli(*args, timeout=timeout)
        assert out.returncode == 0, f"cumulo {' '.join(args)}: {out.stderr}\n{self.logs()}"
        return out

    def deploy(self, name: str, src: Path, slot: str = "production") -> str:
        """Deploy and wait until every instance is Ready; the slot's VIP URL."""
        self.cli("deploy", name, str(src), "--slot", slot, "--timeout", "90")
        return self.vip(name, slot)

    def vip(self, name: str, slot: str) -> str:
        def known() -> str | None:
            vips = self.client.get_deployment(name, slot)["vips"]
            return f"http://{next(iter(vips.values()))}/" if vips else None

        url = str(wait_until(known, 30, f"the {slot} VIP of {name}"))

        def answers() -> bool:  # in rotation (a custom probe must have passed once)
            try:
                return httpx.get(url + "health", timeout=5).status_code < 500
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, f"the {slot} VIP of {name} to answer")
        return url

    def statuses(self, name: str, slot: str = "production") -> dict[str, str]:
        view = self.client.get_deployment(name, slot)
        return {i["id"]: i["status"] for i in view["instances"]}

    def instances(self) -> dict[str, int]:
        """Instance key (``deployment/Role_IN_n``) -> pid of its main process, from the host
        agents themselves."""
        token = (self.data / "hosts" / "token").read_text().strip()
        out: dict[str, int] = {}
        for info_file in sorted(self.data.glob("hosts/host*/agent.json")):
            try:
                url = json.loads(info_file.read_text())["url"]
                answer = httpx.get(
                    f"{url}/v1/instances", headers={"Authorization": f"Bearer {token}"}, timeout=5
                )
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                continue
            for inst in answer.json()["instances"]:
                if inst.get("pid"):
                    out[inst["key"]] = int(inst["pid"])
        return out


@pytest.fixture
def serve() -> Iterator[Serve]:
    with running(Serve, "cumulo-reliability-", strict=True) as platform:
        yield platform


@dataclass
class Load:
    """A bounded load generator: ``threads`` loops sending ``GET url`` through the VIP, a new
    connection per request (a kept-alive connection whose instance dies cannot be replayed by
    any load balancer, Azure's included), until stopped, ``max_requests`` or ``max_seconds``."""

    url: str
    threads: int = 2
    max_requests: int = 100_000
    max_seconds: float = 90.0
    timeout: float = 10.0
    ok: int = 0
    failed: int = 0
    cut: int = 0
    """Of ``failed``: answers that came with their headers but not all of their body (reported
    apart because no load balancer can replay them; the site host must never cause one)."""
    bodies: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.url.startswith("http://127."), "loopback only"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]

    def __enter__(self) -> Load:
        self._started = time.monotonic()
        for worker in self._workers:
            worker.start()
        wait_until(lambda: self.ok > 0, 10, "the first answer through the VIP")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 5)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=self.timeout, limits=limits) as http:
            while not self._stop.is_set():
                if self.total >= self.max_requests:
                    return
                if time.monotonic() - self._started > self.max_seconds:
                    return
                try:
                    response = http.get(self.url)
                    good = response.status_code == 200
                    what = response.text if good else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    good, what = False, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if good:
                        self.ok += 1
                        self.bodies[" ".join(what.split(" ")[:2])[:40]] += 1  # "version 2"
                    else:
                        self.failed += 1
                        self.cut += "without sending complete message body" in what
                        if len(self.failures) < 10:
                            self.failures.append(f"{time.monotonic() - self._started:.2f}s {what}")

    def report(self, case: str) -> str:
        line = (
            f"[{case}] {self.total} requests through the VIP: {self.ok} ok, {self.failed} failed"
            f" ({self.cut} of them cut mid-answer) ({dict(self.bodies)})"
        )
        print(line)
        return line

    def assert_clean(self, case: str, at_least: int = 50) -> None:
        line = self.report(case)
        assert self.failed == 0, f"{line}; first failures: {self.failures}"
        assert self.ok >= at_least, f"{line}; the load generator barely ran"
