"""Shared helpers of bench/deploy.py, heal.py and scale.py: the embedded platform
(``cumulo.api.platform.Platform``, what ``cumulo serve`` runs) on loopback in a temporary data
directory, a tiny service written on the fly, and the machine's load (``uptime``).

The platform runs in this process on its own event loop thread, so a benchmark can time the
controller's reconcile passes directly; every process it starts is stopped at exit.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cumulo.api.platform import Platform
from cumulo.client import Client

CSDEF_HEAD = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="{name}"
    xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model" upgradeDomainCount="{uds}">
"""
WEB = """  <WebRole name="Web" vmsize="ExtraSmall">
    <Sites>
      <Site name="Web" cumulo:wsgiApp="app:application">
        <Bindings><Binding name="Http" endpointName="Http" /></Bindings>
      </Site>
    </Sites>
    <Runtime executionContext="elevated">
      <Environment>
        <Variable name="INSTANCE_ID">
          <RoleInstanceValue xpath="/RoleEnvironment/CurrentInstance/@id" />
        </Variable>
      </Environment>
    </Runtime>
    <Endpoints>
      <InputEndpoint name="Http" protocol="http" port="{port}" localPort="*" />
    </Endpoints>
  </WebRole>
"""
WORKER = """  <WorkerRole name="Worker" vmsize="ExtraSmall">
    <Runtime executionContext="elevated">
      <EntryPoint>
        <ProgramEntryPoint commandLine="{command}" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
  </WorkerRole>
"""
APP = """import os

BODY = ("ok " + os.environ.get("INSTANCE_ID", "?")).encode()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def tiny_service(
    root: Path,
    name: str,
    *,
    web: int = 0,
    worker: int = 0,
    port: int = 0,
    command: str = "sleep 100000",
    uds: int = 5,
) -> Path:
    """A service with ``web`` instances of a WSGI web role (answers ``ok INSTANCE``) and
    ``worker`` instances of a worker role running ``command``."""
    root.mkdir(parents=True, exist_ok=True)
    csdef = CSDEF_HEAD.format(name=name, uds=uds)
    cscfg = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ServiceConfiguration serviceName="{name}" xmlns="http://schemas.microsoft.com/'
        'ServiceHosting/2008/10/ServiceConfiguration">\n'
    )
    if web:
        csdef += WEB.format(port=port or free_port())
        cscfg += f'  <Role name="Web"><Instances count="{web}" /></Role>\n'
        (root / "Web").mkdir(exist_ok=True)
        (root / "Web" / "app.py").write_text(APP)
    if worker:
        csdef += WORKER.format(command=command)
        cscfg += f'  <Role name="Worker"><Instances count="{worker}" /></Role>\n'
        (root / "Worker").mkdir(exist_ok=True)
        (root / "Worker" / "README.txt").write_text("A benchmark worker: it only sleeps.\n")
    (root / "ServiceDefinition.csdef").write_text(csdef + "</ServiceDefinition>\n")
    (root / "ServiceConfiguration.cscfg").write_text(cscfg + "</ServiceConfiguration>\n")
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def rss_kb(pid: int) -> int:
    """Resident memory of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Running:
    """The embedded platform on a background event loop, with an API client."""

    def __init__(self, platform: Platform, loop: asyncio.AbstractEventLoop) -> None:
        self.platform = platform
        self.loop = loop
        token = (platform.data_dir / "api-token").read_text().strip()
        self.client = Client(platform.url, token)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
        self.env |= {"CUMULO_URL": platform.url, "CUMULO_TOKEN": token}

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def cli(self, *args: str) -> float:
        """Run ``cumulo ARGS`` against this platform; the seconds it took."""
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "cumulo.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"cumulo {' '.join(args)} failed: {out.stderr}")
        return took

    def component_pids(self) -> dict[str, int]:
        """The platform's own processes: this one (controller + API), host agents, LBs."""
        pids = {"controller+api (this process)": os.getpid()}
        for n, pid in self.platform.host_pids.items():
            pids[f"host agent host{n}"] = pid
        for proc in self.platform.procs:
            if proc.returncode is None and proc.pid not in self.platform.host_pids.values():
                argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
                what = " ".join(a.decode() for a in argv[3:5])  # "lb serve", "storage serve"
                pids[f"{what} (pid {proc.pid})"] = proc.pid
        return pids

    def instance_pids(self) -> dict[str, int]:
        """Instance key -> main pid, from the host agents."""
        out: dict[str, int] = {}
        for host in self.platform.hosts:
            for inst in self.call(host.observe()):
                if inst.get("pid"):
                    out[str(inst["key"])] = int(inst["pid"])
        return out

    def wait_ready(self, service: str, slot: str, count: int, timeout: float = 300) -> float:
        """Seconds until the slot's deployment has ``count`` instances, all ReadyRole."""
        started = time.perf_counter()
        while True:
            view = self.client.get_deployment(service, slot)
            statuses = [i["status"] for i in view["instances"]]
            if len(statuses) == count and set(statuses) == {"ReadyRole"}:
                took = time.perf_counter() - started
                while view.get("operation") is not None:  # let the operation finish too
                    time.sleep(0.01)
                    view = self.client.get_deployment(service, slot)
                return took
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{service}: not Ready after {timeout} s: {statuses}")
            time.sleep(0.01)


@contextmanager
def platform(*, hosts: int = 1, tick_times: list[float] | None = None) -> Iterator[Running]:
    """Start the embedded platform in a temporary data directory; stop it and remove the
    directory at the end. ``tick_times`` collects each controller pass's duration (seconds)."""
    os.environ.setdefault("CUMULO_LOG_LEVEL", "warning")
    from cumulo.log import configure

    configure()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="cumulo-bench-"))
    os.chmod(base, 0o711)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    p = Platform(base / "data", hosts=hosts, listen="127.0.0.1:0", storage_ports=None)
    try:
        asyncio.run_coroutine_threadsafe(p.start(), loop).result(120)
        if tick_times is not None:
            _time_ticks(p, tick_times)
        running = Running(p, loop)
        try:
            yield running
        finally:
            running.client.close()
    finally:
        asyncio.run_coroutine_threadsafe(p.stop(), loop).result(180)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        shutil.rmtree(base, ignore_errors=True)


def _time_ticks(p: Platform, out: list[float]) -> None:
    controller = p.controller
    original: Callable[[], Any] = controller.tick

    async def timed() -> float:
        started = time.perf_counter()
        delay: float = await original()
        out.append(time.perf_counter() - started)
        return delay

    controller.tick = timed  # type: ignore[method-assign]
