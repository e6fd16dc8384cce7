"""The embedded platform behind ``cumulo serve``: controller + API, host agents, load balancers.

Everything runs on loopback, state under one data directory::

    <data>/cumulo.db, packages/, approots/   the store (SqliteStore) and extracted packages
    <data>/api-token (0600), api.json        the management API's token and URL (for the CLI)
    <data>/hosts/host<N>/                    host agent N's data (``cumulo host run``)
    <data>/hosts/token                       the token the controller uses with host agents
    <data>/lb/<service>.json, lb/token       each service's load balancer state and token
    <data>/lb/addresses.json                 VIP addresses given to each service
    <data>/storage/                          the storage service (``cumulo storage serve``):
                                             127.0.0.1:10000-10002, as UseDevelopmentStorage
                                             expects; optional (skipped when the ports are taken)

A restart after the platform process was killed (kill -9) **adopts** the host agents and load
balancers still running from the previous run (their pid is alive and their API answers), so
no instance restarts and no listener closes; the controller then finishes the operations left
in progress.

Each simulated host is its own process and its own fault domain (``--hosts N``). Each service
gets its own load-balancer process (``cumulo lb serve``) when its routes are first set; the first
service's VIPs are 127.0.0.1 (production) and 127.0.0.2 (staging), the next 127.0.1.1/127.0.1.2
and so on. ``stop()`` stops every instance (an empty desired set to each host agent), then the
host agents and load balancers: Ctrl-C of ``cumulo serve`` leaves nothing running.

These processes are the platform's own components, not role instances; role processes are
started only by the host agents' spawner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from cumulo.api.app import create_app
from cumulo.api.auth import ensure_token
from cumulo.api.server import bound_url, uvicorn_config, write_endpoint
from cumulo.clock import SystemClock
from cumulo.controller.autoscaler import Autoscaler, AutoscalerSettings, QueueLength
from cumulo.controller.loop import Controller, LoopSettings
from cumulo.controller.management import Management
from cumulo.controller.ports import HostAgentHttp, LoadBalancerHttp
from cumulo.errors import InputError, TemporaryError
from cumulo.log import get_logger
from cumulo.storage.store.sqlite import SqliteStore


def _token_file(path: Path) -> str:
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"--listen '{listen}' must be HOST:PORT, e.g. 127.0.0.1:8283.")
    return host.strip("[]"), int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_tls(tls: tuple[str, str]) -> tuple[str, str]:
    """(certificate chain file, key file), checked now: a sentence instead of uvicorn's
    traceback when either cannot be read or the key is not the certificate's."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls[0], tls[1])
    except FileNotFoundError as exc:
        raise InputError(f"--tls-cert/--tls-key: {exc.filename} does not exist.") from None
    except (ssl.SSLError, OSError) as exc:
        raise InputError(
            f"--tls-cert {tls[0]} with --tls-key {tls[1]} cannot serve TLS ({exc}): give a PEM "
            "certificate (chain) and the PEM private key that belongs to it."
        ) from None
    return tls


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def _answers(url: str, path: str, token: str | None = None) -> bool:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=2.0, headers=headers) as client:
            return (await client.get(url.rstrip("/") + path)).status_code == 200
    except httpx.HTTPError:
        return False


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``cumulo serve`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Platform:
    """Start with ``await start()``, stop with ``await stop()`` (see the module docstring)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        hosts: int = 1,
        listen: str = "127.0.0.1:8283",
        python: str = sys.executable,
        host_args: tuple[str, ...] = (),
        settings: LoopSettings | None = None,
        emulated: bool = False,
        storage_ports: tuple[int, int, int] | None = (10000, 10001, 10002),
        storage_fallback: bool = False,
        tls: tuple[str, str] | None = None,
        allow_plain_http: bool = False,
    ) -> None:
        if hosts < 1 or hosts > 20:
            raise InputError(f"--hosts {hosts} is out of range; use 1 to 20 simulated hosts.")
        self.data_dir = Path(data_dir).resolve()
        self.host_count = hosts
        self.listen = _split(listen)
        self.tls = _check_tls(tls) if tls else None
        if self.tls is None and not allow_plain_http and not _loopback(self.listen[0]):
            raise InputError(
                f"--listen {listen} is not a loopback address: the API's token would cross the "
                "network in clear. Give --tls-cert and --tls-key, or --allow-plain-http if a "
                "TLS proxy in front of it ends TLS."
            )
        self.python = python
        self.host_args = host_args
        self.settings = settings or LoopSettings()
        self.emulated = emulated
        self.storage_ports = storage_ports
        self.storage_fallback = storage_fallback
        """When the storage ports are taken, run the storage service on free ports instead (the
        caller then gives roles an explicit connection string; ``cumulo run`` does)."""
        self.storage: dict[str, Any] | None = None
        """The storage service's ready file (its ports), once it listens."""
        self.storage_pid: int | None = None
        """Pid of the storage service (spawned or adopted), watched by ``_supervise``."""
        self.procs: list[asyncio.subprocess.Process] = []
        self.adopted: list[int] = []
        self.host_pids: dict[int, int] = {}
        """Host index -> pid of its host agent (spawned or adopted), watched by ``_supervise``."""
        """Pids of host agents and load balancers left running by a previous run."""
        self.lbs: dict[str, LoadBalancerHttp] = {}
        self._lb_lock = asyncio.Lock()
        self.url = ""
        self.log = get_logger(component="platform")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def _cli(self, *args: str) -> list[str]:
        return [self.python, "-m", "cumulo.cli.main", *args]

    async def _spawn(self, *args: str, stdout: int | None = None) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self._cli(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    async def _start_host(self, n: int, token_path: Path) -> HostAgentHttp:
        data = self.data_dir / "hosts" / f"host{n}"
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o711)
        info_file = data / "agent.json"
        token = token_path.read_text().strip()
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            old = json.loads(info_file.read_text())
            if _alive(int(old["pid"])) and await _answers(str(old["url"]), "/v1/health", token):
                # A host agent from a previous run still runs (the controller was killed):
                # keep it, and with it every instance it runs.
                self.adopted.append(int(old["pid"]))
                self.host_pids[n] = int(old["pid"])
                self.log.info("host.adopted", host=f"host{n}", pid=old["pid"])
                return HostAgentHttp(f"host{n}", n, str(old["url"]), token)
        with contextlib.suppress(FileNotFoundError):
            info_file.unlink()
        proc = await self._spawn(
            "host",
            "run",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(token_path),
            "--host-id",
            f"host{n}",
            *self.host_args,
        )
        deadline = time.monotonic() + 60
        while True:
            if proc.returncode is not None:
                raise TemporaryError(f"Host agent host{n} exited at start ({proc.returncode}).")
            with contextlib.suppress(FileNotFoundError, ValueError):
                info = json.loads(info_file.read_text())
                if info.get("pid") == proc.pid:
                    break
            if time.monotonic() > deadline:
                raise TemporaryError(f"Host agent host{n} did not start within 60 s.")
            await asyncio.sleep(0.05)
        self.host_pids[n] = proc.pid
        return HostAgentHttp(f"host{n}", n, str(info["url"]), token)

    def slot_addresses(self, service: str) -> dict[str, str]:
        """The production and staging VIP addresses the service has (or will have)."""
        production, staging = self._addresses(service)
        return {"production": production, "staging": staging}

    def _addresses(self, service: str) -> tuple[str, str]:
        path = self.data_dir / "lb" / "addresses.json"
        known: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            known = json.loads(path.read_text())
        if service not in known:
            known[service] = max(known.values(), default=-1) + 1
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known))
        k = known[service]
        return f"127.0.{k}.1", f"127.0.{k}.2"

    async def _start_storage(self, ports: tuple[int, int, int] | None = None) -> None:
        """The Azure-compatible storage service (blob, queue, table), optional: when its ports
        are taken the platform runs without it and says so (or, with ``storage_fallback``, runs
        it on free ports). ``ports`` restarts it on the ports it had (``_supervise``)."""
        if self.storage_ports is None:
            return
        data = self.data_dir / "storage"
        data.mkdir(parents=True, exist_ok=True)
        ready = data / "ready.json"
        info_file = data / "process.json"
        if ports is None:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                old = json.loads(info_file.read_text())
                if _alive(int(old["pid"])):
                    self.adopted.append(int(old["pid"]))
                    self.storage_pid = int(old["pid"])
                    self.storage = json.loads(ready.read_text())
                    return
        attempts = [ports or self.storage_ports]
        if ports is None and self.storage_fallback and self.storage_ports != (0, 0, 0):
            attempts.append((0, 0, 0))
        for blob, queue, table in attempts:
            with contextlib.suppress(FileNotFoundError):
                ready.unlink()
            proc = await self._spawn(
                "storage",
                "serve",
                "--data",
                str(data),
                "--blob-port",
                str(blob),
                "--queue-port",
                str(queue),
                "--table-port",
                str(table),
                "--ready-file",
                str(ready),
            )
            info_file.write_text(json.dumps({"pid": proc.pid}))
            deadline = time.monotonic() + 30
            while proc.returncode is None and time.monotonic() < deadline:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    self.storage = json.loads(ready.read_text())
                    self.storage_pid = proc.pid
                    self.log.info("storage.ready", **{k: v for k, v in self.storage.items()})
                    return
                await asyncio.sleep(0.05)
            self.log.warning(
                "storage.unavailable",
                why="the storage service did not start (are ports "
                f"{blob}-{table} taken?); services run without UseDevelopmentStorage",
            )

    async def lb_for(self, service: str) -> LoadBalancerHttp | None:
        async with self._lb_lock:
            if service in self.lbs:
                return self.lbs[service]
            token_path = self.data_dir / "lb" / "token"
            token = _token_file(token_path)
            info_file = self.data_dir / "lb" / f"{service}.process.json"
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                old = json.loads(info_file.read_text())
                if _alive(int(old["pid"])) and await _answers(str(old["api"]), "/healthz"):
                    self.adopted.append(int(old["pid"]))
                    self.lbs[service] = LoadBalancerHttp(str(old["api"]), token)
                    return self.lbs[service]
            production, staging = self._addresses(service)
            proc = await self._spawn(
                "lb",
                "serve",
                "--api",
                "127.0.0.1:0",
                "--token-file",
                str(token_path),
                "--state-file",
                str(self.data_dir / "lb" / f"{service}.json"),
                "--production-address",
                production,
                "--staging-address",
                staging,
                "--loop",
                "asyncio",
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                ready = json.loads(line)
            except (TimeoutError, ValueError):
                raise TemporaryError(f"The load balancer of {service} did not start.") from None
            info_file.write_text(json.dumps({"api": ready["api"], "pid": proc.pid}))
            lb = LoadBalancerHttp(str(ready["api"]), token)
            self.lbs[service] = lb
            return lb

    async def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o711)
        store = SqliteStore(self.data_dir, clock=SystemClock())
        self.store = store
        token = ensure_token(self.data_dir)
        host_token = self.data_dir / "hosts" / "token"
        _token_file(host_token)
        await self._start_storage()
        hosts = await asyncio.gather(
            *(self._start_host(n, host_token) for n in range(self.host_count))
        )
        self.hosts = list(hosts)
        management = Management(store)
        controller = Controller(
            management,
            self.hosts,
            data_dir=self.data_dir,
            lb_for=self.lb_for,
            settings=self.settings,
            emulated=self.emulated,
        )
        management.observe = controller.snapshot
        management.wake = controller.wake
        self.controller = controller
        # Autoscale: CPU from the host agents' usage reports; queue lengths from this
        # platform's storage service.
        self.queues = QueueLength(self._queue_endpoint)
        self.autoscaler = Autoscaler(
            management,
            self.hosts,
            queues=self.queues,
            settings=AutoscalerSettings(),
        )
        app = create_app(
            management,
            token=token,
            logs=controller.instance_logs,
            exec_=controller.instance_exec,
            autoscale=self.autoscaler,
        )
        server = _Server(uvicorn_config(app, *self.listen, tls=self.tls))
        self.server = server
        self._tasks.append(asyncio.create_task(server.serve()))
        self._tasks.append(asyncio.create_task(controller.run(self._stop)))
        self._tasks.append(asyncio.create_task(self._supervise()))
        self._tasks.append(asyncio.create_task(self.autoscaler.run(self._stop)))
        deadline = time.monotonic() + 30
        while not server.started:
            if self._tasks[0].done() or time.monotonic() > deadline:
                raise TemporaryError(f"The management API could not listen on {self.listen}.")
            await asyncio.sleep(0.02)
        self.url = bound_url(server)
        write_endpoint(self.data_dir, self.url, ca=self.tls[0] if self.tls else None)
        self.log.info("platform.ready", url=self.url, hosts=self.host_count)
        return self.url

    def _queue_endpoint(self) -> tuple[str, int] | None:
        """Where the storage service's queue API listens now (None: it does not run)."""
        if self.storage is None or self.storage_pid is None:
            return None
        return str(self.storage.get("host", "127.0.0.1")), int(self.storage["queue"])

    async def _supervise(self, interval: float = 0.5) -> None:
        """Start a host agent again when its process dies; the new one adopts the instances
        (their processes never stopped), so nothing is placed elsewhere."""
        host_token = self.data_dir / "hosts" / "token"
        while not self._stop.is_set():
            if self.storage_pid is not None and not _alive(self.storage_pid):
                await self._restart_storage()
            for n, pid in list(self.host_pids.items()):
                if self._stop.is_set() or _alive(pid):
                    continue
                self.log.warning("host.died", host=f"host{n}", pid=pid)
                for proc in self.procs:
                    if proc.pid == pid:
                        with contextlib.suppress(Exception):
                            await proc.wait()
                try:
                    fresh = await self._start_host(n, host_token)
                except TemporaryError as exc:
                    self.log.error("host.restart_failed", host=f"host{n}", error=exc.message)
                    continue
                await self.hosts[n].set_url(fresh.url)
                await fresh.close()
                self.log.info("host.restarted", host=f"host{n}", pid=self.host_pids[n])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def _restart_storage(self) -> None:
        """The storage service died (e.g. kill -9): start it again on the same ports over the
        same data, which it recovers (docs/storage.md: acknowledged writes are durable)."""
        pid, self.storage_pid = self.storage_pid, None
        self.log.warning("storage.died", pid=pid)
        for proc in self.procs:
            if proc.pid == pid:
                with contextlib.suppress(Exception):
                    await proc.wait()
        old = self.storage or {}
        ports = (int(old.get("blob", 0)), int(old.get("queue", 0)), int(old.get("table", 0)))
        await self._start_storage(ports)
        if self.storage_pid is not None:
            self.log.info("storage.restarted", pid=self.storage_pid)

    async def stop(self, grace: float = 30.0) -> None:
        self._stop.set()
        if hasattr(self, "server"):
            self.server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 15)
        # Stop every instance: an empty desired set on each host, then wait until none is left.
        for host in getattr(self, "hosts", []):
            with contextlib.suppress(Exception):
                await host.apply([])
        deadline = time.monotonic() + grace
        for host in getattr(self, "hosts", []):
            while time.monotonic() < deadline:
                try:
                    if not await host.observe():
                        break
                except Exception:
                    break
                await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                await host.close()
        for lb in self.lbs.values():
            with contextlib.suppress(Exception):
                await lb.close()
        if hasattr(self, "queues"):
            with contextlib.suppress(Exception):
                await self.queues.close()
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for pid in self.adopted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in self.adopted:
            while _alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "api.json").unlink()
        if hasattr(self, "store"):
            self.store.close()
        self.log.info("platform.stopped")
