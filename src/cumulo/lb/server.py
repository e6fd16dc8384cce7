"""The load balancer process: route table in, listeners, probes, drains and metrics out.

Why one object: the data plane has exactly one mutable thing, the current ``RouteTable``. Every
change (a new table from the controller, a swap, an instance marked routable or not, a custom
probe that flips) builds new ``EndpointRoute`` objects from the pure table and assigns them to the
listeners in one synchronous pass, with no ``await`` in between, so the event loop never accepts
a connection against half a change. Swap is therefore atomic and takes microseconds.

Listeners are keyed by (kind, slot, endpoint name, declared public port). A swap between slots
that declare the same endpoints keeps every listener; only their routes change. Connections that
are already open keep the backend they were relayed to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.errors import ConflictError, CumuloError
from cumulo.lb import balance, routes
from cumulo.lb.acl import CompiledAcl, compile_acl
from cumulo.lb.balance import Flow
from cumulo.lb.drain import DrainBook
from cumulo.lb.probes import ProbeState, probe_once
from cumulo.lb.proxy import ClientConn, Listener, bind_walking
from cumulo.lb.routes import Backend, Endpoint, Probe, RouteTable
from cumulo.log import get_logger


class ListenError(CumuloError):
    """A VIP listener could not be opened (address not on this machine, no free port)."""

    code = "ListenFailed"
    http_status = 409
    exit_code = 4


class Stats:
    """Counters for one endpoint (VIP side) or one backend."""

    __slots__ = (
        "active",
        "bytes_in",
        "bytes_out",
        "connect_failures",
        "denied",
        "no_backend",
        "retries",
        "total",
    )

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.bytes_in = 0  # client -> backend, counted when a connection closes
        self.bytes_out = 0  # backend -> client
        self.connect_failures = 0
        self.retries = 0
        self.denied = 0
        self.no_backend = 0


class BackendRuntime:
    """One backend as the data plane sees it; survives table changes (keyed by ``Backend.key``)."""

    __slots__ = ("address", "failed_until", "instance", "key", "port", "stats")

    def __init__(self, backend: Backend) -> None:
        self.key = backend.key
        self.instance = backend.instance
        self.address = backend.address
        self.port = backend.port
        self.stats = Stats()
        self.failed_until = 0.0


class EndpointRoute:
    """The route of one listener: ACL, eligible backends, distribution (implements proxy.Route)."""

    def __init__(
        self,
        lb: LoadBalancer,
        *,
        slot: str,
        name: str,
        distribution: str,
        idle_timeout: float,
        acl: CompiledAcl | None,
        candidates: list[tuple[Backend, BackendRuntime]],
        stats: Stats,
    ) -> None:
        self.lb = lb
        self.slot = slot
        self.name = name
        self.distribution = distribution
        self.idle_timeout = idle_timeout
        self.acl = acl
        self.candidates = [b for b, _ in candidates]
        self.runtime = {b.key: rt for b, rt in candidates}
        self.single = candidates[0][1] if len(candidates) == 1 else None
        self.stats = stats
        self.turn = 0

    def admit(self, remote_ip: str) -> bool:
        acl = self.acl
        if acl is None or acl.allows(remote_ip):
            return True
        self.stats.denied += 1
        return False

    def pick(self, flow: Flow, tried: list[BackendRuntime] | None) -> BackendRuntime | None:
        if tried is None and self.single is not None:
            return self.single
        lb = self.lb
        runtime = self.runtime
        pool = self.candidates
        if tried:
            pool = [b for b in pool if runtime[b.key] not in tried]
        if lb.failed_until:  # some backend failed recently: prefer the others
            now = lb.clock.monotonic()
            if now < lb.failed_until:
                healthy = [b for b in pool if runtime[b.key].failed_until <= now]
                if healthy:
                    pool = healthy
            else:
                lb.failed_until = 0.0
        active = None
        if self.distribution == "leastConnections":
            active = {b.key: runtime[b.key].stats.active for b in pool}
        chosen = balance.choose(self.distribution, pool, flow, turn=self.turn, active=active)
        self.turn += 1
        if chosen is None:
            self.stats.no_backend += 1
            return None
        return runtime[chosen.key]

    def opened(self, conn: ClientConn) -> None:
        conn.last = self.lb.clock.monotonic()
        self.lb.conns.add(conn)
        self.stats.active += 1
        self.stats.total += 1

    def connected(self, conn: ClientConn, backend: BackendRuntime) -> None:
        backend.stats.active += 1
        backend.stats.total += 1
        self.lb.drain.opened(backend.key, conn)
        if backend.key not in self.lb.in_rotation:
            # an out-of-rotation backend got this connection as a retry of last resort
            self.lb.drain.update(
                self.lb.in_rotation, self.lb.clock.monotonic(), self.lb.table.drain_timeout
            )

    def release(self, conn: ClientConn) -> None:
        backend = conn.backend
        if backend is not None:
            backend.stats.active -= 1
            backend.stats.bytes_in += conn.bytes_in
            backend.stats.bytes_out += conn.bytes_out
            self.lb.drain.closed(backend.key, conn)

    def closed(self, conn: ClientConn) -> None:
        self.lb.conns.discard(conn)
        self.release(conn)
        self.stats.active -= 1
        self.stats.bytes_in += conn.bytes_in
        self.stats.bytes_out += conn.bytes_out

    def connect_failed(self, backend: BackendRuntime, retried: bool) -> None:
        now = self.lb.clock.monotonic()
        backend.stats.connect_failures += 1
        self.stats.connect_failures += 1
        backend.failed_until = now + self.lb.settings.retry_after_failure
        self.lb.failed_until = max(self.lb.failed_until, backend.failed_until)
        if retried:
            self.stats.retries += 1
            backend.stats.retries += 1
        self.lb.log.info(
            "lb.backend.failed", instance=backend.instance, port=backend.port, retried=retried
        )


FIRST_PROBE_WAIT = 1.0
"""How long a route-table PUT waits for the first probe of each backend it adds (seconds)."""


@dataclass
class LbSettings:
    """Settings of the load balancer process."""

    retry_after_failure: float = 0.5
    """Seconds a backend that refused or reset a connection is skipped when others are eligible.
    Short, because an instance the guest agent restarts is back within a second, often before
    the controller even notices; trying a dead backend again costs one refused connect on the
    host, which the proxy retries on another backend."""

    max_tick: float = 1.0
    """Longest interval, in seconds, between idle-timeout and drain-timeout sweeps."""

    reuse_port: bool = False
    """Bind listeners with SO_REUSEPORT (several worker processes sharing a table)."""


class LoadBalancer:
    """The data plane: apply tables, swap, mark instances, run probes and sweeps, report metrics."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        addresses: Mapping[str, str] | None = None,
        state_file: Path | None = None,
        settings: LbSettings | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.addresses = {**routes.DEFAULT_ADDRESSES, **(addresses or {})}
        self.state_file = state_file
        self.settings = settings or LbSettings()
        self.table: RouteTable = routes.empty_table(self.addresses)
        self.boot_id = os.urandom(8).hex()
        self.listeners: dict[tuple[Any, ...], Listener] = {}
        self.backends: dict[balance.BackendKey, BackendRuntime] = {}
        self.endpoint_stats: dict[tuple[str, str], Stats] = {}
        self.probe_states: dict[tuple[Any, ...], ProbeState] = {}
        self.probe_tasks: dict[tuple[Any, ...], asyncio.Task[None]] = {}
        self.probe_seen_up: dict[tuple[Any, ...], bool] = {}
        self.drain = DrainBook()
        self.in_rotation: set[balance.BackendKey] = set()
        self.conns: set[ClientConn] = set()
        self.failed_until = 0.0  # the latest failed_until of any backend (0: none pending)
        self.swaps = 0
        self.last_swap_seconds = 0.0
        self.log = get_logger(component="lb")
        self._tick_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle

    async def start(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            try:
                raw = json.loads(self.state_file.read_text(encoding="utf-8"))
                await self.apply(routes.parse_table(raw, self.addresses), persist=False)
                self.log.info(
                    "lb.routes.restored", version=self.table.version, file=str(self.state_file)
                )
            except (ValueError, routes.RouteTableError) as exc:
                self.log.warning("lb.routes.unreadable", file=str(self.state_file), error=str(exc))
        self._tick_task = asyncio.get_running_loop().create_task(self._ticker())

    async def pull_routes(self, url: str, token: str, *, retry: float = 1.0) -> None:
        """Fetch the route table from the controller (``GET url`` with the bearer token) until
        it answers once; a table already newer (pushed meanwhile) is kept. Run as a task."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                try:
                    response = await client.get(url, headers=headers)
                    response.raise_for_status()
                    table = routes.parse_table(response.json(), self.addresses)
                except (httpx.HTTPError, ValueError, routes.RouteTableError) as exc:
                    self.log.warning("lb.routes.pull_failed", url=url, error=str(exc))
                    await self.clock.sleep(retry)
                    continue
                if table.version >= self.table.version:
                    try:
                        await self.apply(table)
                    except CumuloError as exc:
                        self.log.warning("lb.routes.pull_rejected", url=url, error=exc.message)
                        await self.clock.sleep(retry)
                        continue
                self.log.info("lb.routes.pulled", url=url, version=table.version)
                return

    async def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        for task in self.probe_tasks.values():
            task.cancel()
        for task in self.probe_tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.probe_tasks.clear()
        for listener in self.listeners.values():
            listener.close()
        for conn in list(self.conns):
            conn.abort()
        for listener in self.listeners.values():
            if listener.server is not None:
                await listener.server.wait_closed()
        self.listeners.clear()

    # -- changes (each ends in _rebuild, which is synchronous)

    async def apply(self, table: RouteTable, *, persist: bool = True) -> dict[str, Any]:
        """Make ``table`` current: bind new listeners, route, close listeners no longer declared."""
        async with self._lock:
            if table.version < self.table.version:
                raise ConflictError(
                    f"route table version {table.version} is older than the current version "
                    f"{self.table.version}; send a newer table."
                )
            previous, self.table = self.table, table
            try:
                new = self._rebuild()
            except ListenError:
                self.table = previous
                raise
            for listener in new:
                await listener.start()
            first = self._sync_probes()
            if persist:
                self._persist()
            self.log.info("lb.routes.applied", version=table.version, listeners=len(self.listeners))
        # Answer once the new backends' first probes are in (at most FIRST_PROBE_WAIT): a
        # caller told "applied" may then count on a healthy new instance being in rotation.
        if first:
            await asyncio.wait(
                [asyncio.ensure_future(e.wait()) for e in first], timeout=FIRST_PROBE_WAIT
            )
        return self.describe()

    async def swap(self, version: int | None = None) -> dict[str, Any]:
        """Exchange the production and staging route tables in one step."""
        async with self._lock:
            if version is not None and version <= self.table.version:
                raise ConflictError(
                    f"swap version {version} is not newer than the current version "
                    f"{self.table.version}."
                )
            started = time.perf_counter()
            previous, self.table = self.table, routes.swapped(self.table, version)
            try:
                new = self._rebuild()
            except ListenError:
                self.table = previous
                raise
            elapsed = time.perf_counter() - started
            for listener in new:  # only when the two slots declare different endpoints
                await listener.start()
            self._sync_probes()
            self.swaps += 1
            self.last_swap_seconds = elapsed
            self._persist()
            self.log.info("lb.swap.done", version=self.table.version, ms=round(elapsed * 1000, 3))
            result = self.describe()
            result["swapMs"] = elapsed * 1000
            return result

    async def set_routable(
        self, instance: str, routable: bool, version: int | None = None
    ) -> dict[str, Any]:
        async with self._lock:
            if version is not None and version <= self.table.version:
                raise ConflictError(
                    f"version {version} is not newer than the current version {self.table.version}."
                )
            known = any(
                b.instance == instance
                for s in self.table.slots.values()
                for ep in s.endpoints.values()
                for b in ep.backends
            )
            if not known:
                from cumulo.errors import NotFoundError

                raise NotFoundError(f"instance '{instance}' is not a backend of any endpoint.")
            self.table = routes.with_routable(self.table, instance, routable, version)
            self._rebuild()
            self._persist()
            self.log.info("lb.backend.routable", instance=instance, routable=routable)
            return self.describe()

    def _probe_key(self, probe: Probe, backend: Backend) -> tuple[Any, ...]:
        return (
            backend.address,
            probe.port or backend.port,
            probe.protocol,
            probe.path,
            probe.interval,
            probe.timeout,
        )

    def _probe_up(self, probe: Probe, backend: Backend) -> bool:
        return self.probe_seen_up.get(self._probe_key(probe, backend), False)

    def _backend_runtime(self, backend: Backend) -> BackendRuntime:
        rt = self.backends.get(backend.key)
        if rt is None:
            rt = self.backends[backend.key] = BackendRuntime(backend)
        return rt

    def _stats(self, slot: str, name: str) -> Stats:
        st = self.endpoint_stats.get((slot, name))
        if st is None:
            st = self.endpoint_stats[(slot, name)] = Stats()
        return st

    def _route_for(self, slot: str, ep: Endpoint) -> EndpointRoute:
        runtimes = [(b, self._backend_runtime(b)) for b in ep.backends]  # all, for metrics
        eligible = [
            (b, rt)
            for b, rt in runtimes
            if balance.is_eligible(ep, b, self._probe_up(ep.probe, b) if ep.probe else None)
        ]
        for b, rt in eligible:
            if b.key not in self.in_rotation:
                # Back in rotation (Ready again, or its probe passes): that is newer news than a
                # refused connection before it restarted, so it is not skipped any longer.
                rt.failed_until = 0.0
        return EndpointRoute(
            self,
            slot=slot,
            name=ep.name,
            distribution=ep.distribution,
            idle_timeout=ep.idle_timeout,
            acl=compile_acl(ep.acl),
            candidates=eligible,
            stats=self._stats(slot, ep.name),
        )

    def _rebuild(self) -> list[Listener]:
        """Build every route from the current table and assign them; bind listeners that are
        new and close those no longer declared. Synchronous: atomic for the event loop."""
        wanted: dict[tuple[Any, ...], tuple[str, int, EndpointRoute]] = {}
        rotation: set[balance.BackendKey] = set()
        for slot, st in self.table.slots.items():
            for ep in st.endpoints.values():
                route = self._route_for(slot, ep)
                rotation.update(route.runtime)
                wanted[("ep", slot, ep.name, ep.public_port)] = (st.address, ep.public_port, route)
            for iep in st.instance_endpoints.values():
                acl = compile_acl(iep.acl)
                for i, inst in enumerate(iep.instances):
                    backend = Backend(inst.instance, inst.address, inst.port)
                    name = f"{iep.name}/{inst.public_port or i}"
                    route = EndpointRoute(
                        self,
                        slot=slot,
                        name=name,
                        distribution="fiveTuple",
                        idle_timeout=iep.idle_timeout,
                        acl=acl,
                        candidates=[(backend, self._backend_runtime(backend))],
                        stats=self._stats(slot, name),
                    )
                    rotation.add(backend.key)
                    key = ("iep", slot, iep.name, inst.public_port or f"#{i}")
                    wanted[key] = (st.address, inst.public_port, route)
        # bind every new socket first: a bind failure leaves everything as it was
        bound: dict[tuple[Any, ...], socket.socket] = {}
        for key, (address, port, _) in wanted.items():
            listener = self.listeners.get(key)
            if listener is None or listener.sock.getsockname()[0] != address:
                try:
                    bound[key] = bind_walking(address, port, reuse_port=self.settings.reuse_port)
                except OSError as exc:
                    for sock in bound.values():
                        sock.close()
                    raise ListenError(
                        f"cannot listen on {address}:{port} for {key[1]} endpoint '{key[2]}': "
                        f"{exc.strerror or exc}."
                    ) from None
        new: list[Listener] = []
        for key, (_, port, route) in wanted.items():
            if key in bound:
                old = self.listeners.pop(key, None)
                if old is not None:
                    old.close()
                listener = self.listeners[key] = Listener(key, route, bound[key])
                new.append(listener)
                host, real = listener.address
                self.log.info(
                    "lb.listener.bound",
                    slot=key[1],
                    endpoint=key[2],
                    declared=port,
                    address=f"{host}:{real}",
                )
            else:
                self.listeners[key].route = route
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).close()
            self.log.info("lb.listener.closed", slot=key[1], endpoint=key[2])
        self.in_rotation = rotation
        # forget backends that left the table and have no open connection (bounded memory)
        listed = {
            b.key
            for st in self.table.slots.values()
            for ep in st.endpoints.values()
            for b in ep.backends
        }
        for bkey in [k for k, rt in self.backends.items() if not rt.stats.active]:
            if bkey not in listed and bkey not in rotation:
                del self.backends[bkey]
        self.drain.update(rotation, self.clock.monotonic(), self.table.drain_timeout)
        return new

    # -- probes

    def _sync_probes(self) -> list[asyncio.Event]:
        """Start a probe loop per (probe, backend) newly in the table, stop the ones gone; the
        events that the new loops set after their first probe."""
        wanted: dict[tuple[Any, ...], tuple[Probe, Backend]] = {}
        for st in self.table.slots.values():
            for ep in st.endpoints.values():
                if ep.probe is not None:
                    for b in ep.backends:
                        wanted[self._probe_key(ep.probe, b)] = (ep.probe, b)
        loop = asyncio.get_running_loop()
        for key in [k for k in self.probe_tasks if k not in wanted]:
            self.probe_tasks.pop(key).cancel()
            self.probe_states.pop(key, None)
            self.probe_seen_up.pop(key, None)
        first: list[asyncio.Event] = []
        for key, (probe, backend) in wanted.items():
            if key not in self.probe_tasks:
                first.append(asyncio.Event())
                self.probe_tasks[key] = loop.create_task(
                    self._probe_loop(key, probe, backend, first[-1])
                )
        return first

    async def _probe_loop(
        self, key: tuple[Any, ...], probe: Probe, backend: Backend, probed: asyncio.Event
    ) -> None:
        while True:
            ok = await probe_once(
                probe, backend.address, backend.port, min(probe.interval, probe.timeout)
            )
            now = self.clock.monotonic()
            before = self.probe_states.get(key, ProbeState())
            after = before.record(ok, now)
            self.probe_states[key] = after
            was, up = self.probe_seen_up.get(key, False), after.is_up(now, probe.timeout)
            self.probe_seen_up[key] = up
            if was != up:
                self.log.info(
                    "lb.probe.up" if up else "lb.probe.down",
                    instance=backend.instance,
                    port=backend.port,
                )
                self._rebuild()
            probed.set()
            await self.clock.sleep(probe.interval)

    # -- sweeps (idle timeout, drain timeout)

    async def _ticker(self) -> None:
        while True:
            idle = [
                ep.idle_timeout for st in self.table.slots.values() for ep in st.endpoints.values()
            ]
            idle += [
                ep.idle_timeout
                for st in self.table.slots.values()
                for ep in st.instance_endpoints.values()
            ]
            tick = min(self.settings.max_tick, self.table.drain_timeout / 4, *(t / 4 for t in idle))
            await asyncio.sleep(max(tick, 0.02))
            self.sweep()

    def sweep(self) -> None:
        """Close connections idle for longer than their endpoint's idle timeout and connections
        of drained backends whose drain timeout has passed."""
        now = self.clock.monotonic()
        for conn in list(self.conns):
            moved = conn.bytes_in + conn.bytes_out
            if moved != conn.seen:
                conn.seen = moved
                conn.last = now
            elif now - conn.last >= conn.route.idle_timeout:
                self.log.debug("lb.connection.idle", endpoint=conn.route.name)
                conn.abort()
        for due in self.drain.expired(now):
            if isinstance(due, ClientConn):
                due.abort()

    # -- reports

    def _persist(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(routes.table_to_json(self.table)), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def describe(self) -> dict[str, Any]:
        """The real addresses of every listener (after port walking), by slot and endpoint."""
        listeners = []
        for key, listener in sorted(self.listeners.items(), key=lambda kv: str(kv[0])):
            host, port = listener.address
            route = listener.route
            assert isinstance(route, EndpointRoute)
            listeners.append(
                {
                    "kind": "input" if key[0] == "ep" else "instanceInput",
                    "slot": key[1],
                    "endpoint": key[2],
                    "declaredPort": key[3] if isinstance(key[3], int) else 0,
                    "address": host,
                    "port": port,
                    "backends": [f"{b.instance}@{b.address}:{b.port}" for b in route.candidates],
                }
            )
        return {
            "version": self.table.version,
            "bootId": self.boot_id,
            "deployments": {s: st.deployment for s, st in self.table.slots.items()},
            "listeners": listeners,
        }

    def metrics_text(self) -> str:
        """Prometheus text exposition of the per-endpoint and per-backend counters."""
        live_ep: dict[tuple[str, str], list[int]] = {}
        live_be: dict[balance.BackendKey, list[int]] = {}
        for conn in self.conns:
            route = conn.route
            acc = live_ep.setdefault((route.slot, route.name), [0, 0])
            acc[0] += conn.bytes_in
            acc[1] += conn.bytes_out
            if conn.backend is not None:
                bacc = live_be.setdefault(conn.backend.key, [0, 0])
                bacc[0] += conn.bytes_in
                bacc[1] += conn.bytes_out
        lines: list[str] = []
        fields = [
            ("connections_active", "gauge", "active", "Open connections."),
            (
                "connections_total",
                "counter",
                "total",
                "Connections accepted (endpoint) or relayed (backend).",
            ),
            ("bytes_in_total", "counter", "bytes_in", "Bytes from clients to backends."),
            ("bytes_out_total", "counter", "bytes_out", "Bytes from backends to clients."),
            (
                "connect_failures_total",
                "counter",
                "connect_failures",
                "Backend connections refused or reset before a byte.",
            ),
            ("retries_total", "counter", "retries", "Connections retried on another backend."),
        ]
        for metric, kind, attr, help_text in fields:
            name = f"cumulo_lb_endpoint_{metric}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for (slot, ep), st in sorted(self.endpoint_stats.items()):
                value = getattr(st, attr)
                if attr in ("bytes_in", "bytes_out"):
                    value += live_ep.get((slot, ep), [0, 0])[0 if attr == "bytes_in" else 1]
                lines.append(f'{name}{{slot="{slot}",endpoint="{_esc(ep)}"}} {value}')
        for metric, kind, attr, help_text in [
            ("denied_total", "counter", "denied", "Connections refused by the endpoint ACL."),
            (
                "no_backend_total",
                "counter",
                "no_backend",
                "Connections closed: no backend in rotation.",
            ),
        ]:
            name = f"cumulo_lb_endpoint_{metric}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for (slot, ep), st in sorted(self.endpoint_stats.items()):
                lines.append(f'{name}{{slot="{slot}",endpoint="{_esc(ep)}"}} {getattr(st, attr)}')
        for metric, kind, attr, help_text in fields:
            name = f"cumulo_lb_backend_{metric}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for key, rt in sorted(self.backends.items()):
                value = getattr(rt.stats, attr)
                if attr in ("bytes_in", "bytes_out"):
                    value += live_be.get(key, [0, 0])[0 if attr == "bytes_in" else 1]
                labels = f'instance="{_esc(rt.instance)}",address="{rt.address}",port="{rt.port}"'
                lines.append(f"{name}{{{labels}}} {value}")
        name = "cumulo_lb_backend_in_rotation"
        lines += [
            f"# HELP {name} 1 when the backend may get new connections.",
            f"# TYPE {name} gauge",
        ]
        for key, rt in sorted(self.backends.items()):
            labels = f'instance="{_esc(rt.instance)}",address="{rt.address}",port="{rt.port}"'
            lines.append(f"{name}{{{labels}}} {int(key in self.in_rotation)}")
        lines += [
            "# HELP cumulo_lb_routes_version Version of the current route table.",
            "# TYPE cumulo_lb_routes_version gauge",
            f"cumulo_lb_routes_version {self.table.version}",
            "# HELP cumulo_lb_swaps_total Swaps done since start.",
            "# TYPE cumulo_lb_swaps_total counter",
            f"cumulo_lb_swaps_total {self.swaps}",
            "# HELP cumulo_lb_draining_backends Backends out of rotation with open connections.",
            "# TYPE cumulo_lb_draining_backends gauge",
            f"cumulo_lb_draining_backends {len(self.drain.deadlines)}",
        ]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
