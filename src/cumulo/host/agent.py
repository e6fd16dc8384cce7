"""The host agent: the instances of one host, their guest agents, events, adoption.

``HostAgent.apply(specs)`` is idempotent: it starts the missing instances, stops the extra ones,
changes settings in place, recycles instances whose spec changed otherwise, and touches nothing
else. Its state lives on disk under the data directory (mode 0711, traversable by instance users;
each limited instance has its own user, see ``cumulo.host.users``):

    <data>/runtime/python/      cumulo.sdk + the site server, on every role's PYTHONPATH
    <data>/sock/<n>.sock        SDK sockets (short names: Unix socket paths are limited)
    <data>/instances/<deployment>.<instance>/
        spec.json record.json   the spec, pids + kernel start times, state, the instance's
                                user (for adoption; both 0600, the agent's)
        approot/ local/<name>/ temp/ logs/

When the agent stops, instances keep running; a new agent adopts them from ``record.json``
(a pid is adopted only if its kernel start time matches, so a reused pid is never mistaken).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.errors import ConflictError, CumuloError, InputError, NotFoundError
from cumulo.host import limits, localdisk, runtime, users
from cumulo.host.addresses import allocate_address, assign_ports, base_for_host
from cumulo.host.environment import Placement
from cumulo.host.guest import OPS, Guest, HostContext, pick_free_port, safe_name
from cumulo.host.settings import HostSettings
from cumulo.log import get_logger
from cumulo.state.spec import InstanceSpec
from cumulo.state.states import InstanceState

RETRY_BUILD_AFTER = 10.0
"""Seconds before ``prepare`` tries a failed role environment build again."""

_log = get_logger(component="host.agent")


class HostAgent:
    def __init__(
        self,
        data_dir: Path | str,
        settings: HostSettings | None = None,
        *,
        clock: Clock | None = None,
        host_id: str = "host-0",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings or HostSettings()
        self.clock = clock or SystemClock()
        self.host_id = host_id
        self.guests: dict[str, Guest] = {}
        self.topology: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)
        self._seq = 0
        self._event_cond = asyncio.Condition()
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._targets: dict[str, InstanceSpec] = {}
        """key -> the spec last asked for (what queued changes lead to)."""
        self._lock = asyncio.Lock()
        self.ctx: HostContext | None = None
        self._builds: dict[str, tuple[asyncio.Task[Any], float]] = {}
        """Role environment builds started by ``prepare``: source -> (task, start time)."""
        self.epoch = round(self.clock.wall(), 3)
        """When this agent started: event ``seq`` numbers restart with a new epoch."""

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o711)
        for sub in ("instances", "sock"):
            (self.data_dir / sub).mkdir(exist_ok=True)
            os.chmod(self.data_dir / sub, 0o711)
        runtime_path = await asyncio.to_thread(runtime.build, self.data_dir)
        cgroup_prefix = safe_name(
            f"{self.host_id}.{hashlib.sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:8]}."
        )
        instance_users = users.InstanceUsers(
            self.settings.users.range(), cgroup_prefix.rstrip("."), self.settings.users.sweep_dirs
        )
        # users of instances whose directory is gone (a crash between wiping and deleting)
        released = await asyncio.to_thread(
            instance_users.release_strays,
            [p.name for p in (self.data_dir / "instances").iterdir() if p.is_dir()],
        )
        self.ctx = HostContext(
            data_dir=self.data_dir,
            settings=self.settings,
            clock=self.clock,
            runtime_path=str(runtime_path),
            interpreter=runtime.role_interpreter(),
            emit=self.emit,
            host_id=self.host_id,
            cgroup_prefix=cgroup_prefix,
            users=instance_users,
        )
        if released:
            self.emit("host.users_released", None, users=released)
        self._adopt_all()
        if self.settings.use_cgroups:
            keep = {g._cgroup_name() for g in self.guests.values()}
            swept = await asyncio.to_thread(limits.sweep, self.ctx.cgroup_prefix, keep)
            if swept:
                self.emit("host.cgroups_swept", None, groups=swept)
        self.emit("host.started", None, host=self.host_id, adopted=len(self.guests))

    def _adopt_all(self) -> None:
        assert self.ctx is not None
        for root in sorted((self.data_dir / "instances").iterdir()):
            try:
                record = json.loads((root / "record.json").read_text())
                spec = InstanceSpec.from_json(json.loads((root / "spec.json").read_text()))
            except (OSError, ValueError) as exc:
                _log.warning("instance.unreadable", path=str(root), error=str(exc))
                continue
            placement = Placement(
                record["placement"]["address"], dict(record["placement"]["ports"])
            )
            guest = Guest(self.ctx, spec, placement, record=record)
            self.guests[spec.key] = guest
            guest.start()

    async def close(self) -> None:
        """Stop watching; the instances keep running (a new agent adopts them)."""
        for task in list(self._pending.values()):
            task.cancel()
        for guest in list(self.guests.values()):
            await guest.detach()

    async def stop_all(self) -> None:
        await self.apply([], scope=None)
        await self.settle()

    async def settle(self) -> None:
        """Wait until every pending stop/replace has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    # -- events -----------------------------------------------------------------------------
    def emit(self, event: str, key: str | None, **fields: Any) -> None:
        self._seq += 1
        record = {
            "seq": self._seq,
            "epoch": self.epoch,
            "time": self.clock.wall(),
            "event": event,
            "key": key,
            **fields,
        }
        self.events.append(record)
        guest = self.guests.get(key) if key else None
        bound: dict[str, Any] = {"host": self.host_id}
        if guest is not None:
            bound.update(
                service=guest.spec.service,
                slot=guest.spec.slot,
                role=guest.spec.role,
                instance=guest.spec.instance_id,
            )
        with contextlib.suppress(Exception):
            get_logger(**bound).info(event, **{k: v for k, v in fields.items()})
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._event_cond:
            self._event_cond.notify_all()

    def events_since(self, seq: int, key: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["seq"] > seq and (key is None or e["key"] == key)]

    async def follow_events(
        self, seq: int, key: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        while True:
            for e in self.events_since(seq, key):
                seq = e["seq"]
                yield e
            async with self._event_cond:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event_cond.wait(), 15.0)

    # -- desired state ----------------------------------------------------------------------
    async def apply(
        self, specs: Iterable[InstanceSpec], scope: str | None = None
    ) -> dict[str, list[str]]:
        """Make the instances of this host (or of deployment ``scope``) match ``specs``."""
        assert self.ctx is not None, "start() the agent first"
        desired: dict[str, InstanceSpec] = {}
        for spec in specs:
            if scope is not None and spec.deployment_id != scope:
                raise InputError(
                    f"Instance '{spec.key}' is not in deployment '{scope}' named by the request."
                )
            if spec.key in desired:
                raise InputError(f"Instance '{spec.key}' appears twice in the request.")
            desired[spec.key] = spec
        result: dict[str, list[str]] = {
            "started": [],
            "stopped": [],
            "changed": [],
            "recycled": [],
            "unchanged": [],
        }
        async with self._lock:
            for key, guest in list(self.guests.items()):
                if scope is not None and guest.spec.deployment_id != scope:
                    continue
                if key not in desired and not guest.removed:
                    guest.removed = True
                    self._targets.pop(key, None)
                    self._chain(key, self._remove(guest))
                    result["stopped"].append(key)
            for key, spec in desired.items():
                current = self.guests.get(key)
                # What the instance will run once the changes already queued for it are done:
                # a repeated request must not queue the same change twice.
                target = self._targets.get(key) if key in self._pending else None
                if target is None and current is not None and not current.removed:
                    target = current.spec
                if current is None and key not in self._pending:
                    self._create_now(spec)  # visible (StartingRole) as soon as apply answers
                    result["started"].append(key)
                elif target is None:
                    self._chain(key, self._create(spec))
                    result["started"].append(key)
                elif target == spec:
                    result["unchanged"].append(key)
                elif target.same_except_settings(spec):
                    self._chain(key, self._change(key, spec))
                    result["changed"].append(key)
                else:
                    self._chain(key, self._replace(key, spec))
                    result["recycled"].append(key)
                self._targets[key] = spec
        return result

    def _chain(self, key: str, coro: Any) -> None:
        before = self._pending.get(key)

        async def run() -> None:
            try:
                if before is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await before
                await coro
            except Exception as exc:  # an instance's failure must not take the agent down
                _log.error("host.apply_failed", key=key, error=repr(exc))
                self.emit("host.apply_failed", key, error=str(exc))
            finally:
                if self._pending.get(key) is task:
                    del self._pending[key]

        task = asyncio.get_running_loop().create_task(run())
        self._pending[key] = task

    def _placement(self, spec: InstanceSpec, previous: Placement | None = None) -> Placement:
        if previous is not None:
            address = previous.address
        else:
            used = {g.placement.address for g in self.guests.values()}
            base = self.settings.address_base or base_for_host(self.host_id)
            address = allocate_address(used, base)
        ports = assign_ports(
            spec.key,
            spec.endpoints,
            lambda: pick_free_port(address),
            previous.ports if previous is not None else None,
        )
        return Placement(address, ports)

    async def _create(self, spec: InstanceSpec) -> None:
        self._create_now(spec)

    def _create_now(self, spec: InstanceSpec) -> None:
        assert self.ctx is not None
        placement = self._placement(spec)
        guest = Guest(self.ctx, spec, placement)
        self.guests[spec.key] = guest
        self._push_topology(guest)
        guest.start()

    async def _remove(self, guest: Guest) -> None:
        await guest.stop()
        try:
            # still listed (removing) until its files and user are gone: whoever waits for an
            # empty list (cumulo serve's shutdown) does not stop the agent in the middle
            released = await asyncio.to_thread(self._delete_instance_dir, guest)
        finally:
            if self.guests.get(guest.key) is guest:
                del self.guests[guest.key]
        extra = {"user_released": released} if released else {}
        self.emit("instance.removed", guest.key, **extra)

    def _delete_instance_dir(self, guest: Guest) -> str | None:
        """Unmount and delete the instance's files, then release its user (only once nothing of
        the instance is left on disk: a uid is handed out again only when it owns nothing)."""
        localdisk.release_all_under(guest.root)
        shutil.rmtree(guest.root, ignore_errors=True)
        if guest.limits.value is not None:
            guest.limits.value.remove()
        if guest.root.exists():
            raise CumuloError(
                f"The directory of instance '{guest.key}' ({guest.root}) could not be deleted; "
                "its user is kept until it is."
            )
        assert self.ctx is not None and self.ctx.users is not None
        user = self.ctx.users.release(guest.root.name)
        return user.name if user is not None else None

    async def _change(self, key: str, spec: InstanceSpec) -> None:
        guest = self.guests.get(key)
        if guest is None or guest.removed or guest.spec == spec:
            return
        await guest.change_settings(spec)

    async def _replace(self, key: str, spec: InstanceSpec) -> None:
        """A new package or definition: stop, fresh approot (local storage kept), start. Works
        on the instance's guest as it is when the change runs (changes queue per instance)."""
        assert self.ctx is not None
        guest = self.guests.get(key)
        if guest is None or guest.removed:
            self._create_now(spec)
            return
        if guest.spec == spec:
            return
        await guest.stop()
        shutil.rmtree(guest.paths.approot, ignore_errors=True)
        placement = self._placement(spec, guest.placement)
        new = Guest(self.ctx, spec, placement)
        new.history = guest.history
        self.guests[spec.key] = new
        self._push_topology(new)
        new.start()

    # -- queries and operations ------------------------------------------------------------
    def observed(self, deployment_id: str | None = None) -> list[dict[str, Any]]:
        out = []
        for guest in self.guests.values():
            if deployment_id is not None and guest.spec.deployment_id != deployment_id:
                continue
            item = guest.observed()
            item["host"] = self.host_id
            item["removing"] = guest.removed
            out.append(item)
        return out

    def guest(self, key: str) -> Guest:
        guest = self.guests.get(key)
        if guest is None:
            raise NotFoundError(f"Instance '{key}' does not run on host '{self.host_id}'.")
        return guest

    def operate(self, key: str, op: str) -> None:
        if op not in OPS:
            raise InputError(f"Unknown instance operation '{op}'; use reboot, reimage or rebuild.")
        guest = self.guest(key)
        if guest.removed:
            raise ConflictError(f"Instance '{key}' is being removed.")
        guest.request(op)

    async def exec(self, key: str, argv: list[str], timeout: float) -> dict[str, Any]:
        """Run a command in an instance's context (see ``Guest.exec_command``)."""
        return await self.guest(key).exec_command(argv, timeout)

    async def prepare(self, specs: Iterable[InstanceSpec]) -> list[dict[str, Any]]:
        """Build the dependency environments these specs' roles need, ahead of any instance
        (the controller asks before an upgrade walk stops one). Answers at once, one item per
        role folder: ``{"role", "source", "state": "ready" | "building" | "failed",
        "detail"}``. A failed build is tried again by a later call after ``RETRY_BUILD_AFTER``
        seconds; instances built afterwards find the environment in the cache."""
        from cumulo.host import roleenv

        assert self.ctx is not None, "start() the agent first"
        options = roleenv.options_from_environ(
            base=roleenv.BuildOptions(python=self.ctx.interpreter)
        )
        cache = self.data_dir / "roleenv"
        out: list[dict[str, Any]] = []
        by_source = {s.approot_source: s.role for s in specs}
        for source, role in sorted(by_source.items()):
            item: dict[str, Any] = {"role": role, "source": source, "detail": ""}
            out.append(item)
            try:
                declared = roleenv.detect(Path(source)).declared
                built = declared and roleenv.lookup(source, cache, options) is not None
            except CumuloError as exc:
                item.update(state="failed", detail=exc.message)
                continue
            if not declared or built:
                item["state"] = "ready"
                continue
            task, started = self._builds.get(source, (None, 0.0))
            failed_long_ago = (
                task is not None
                and task.done()
                and task.exception() is not None
                and self.clock.monotonic() - started >= RETRY_BUILD_AFTER
            )
            if task is None or failed_long_ago:
                task = asyncio.create_task(
                    asyncio.to_thread(roleenv.ensure, source, cache, options)
                )
                self._builds[source] = (task, self.clock.monotonic())
                self.emit("roleenv.building", None, role=role, source=source)
            if not task.done():
                item["state"] = "building"
                continue
            error = task.exception()
            if error is None:
                item["state"] = "ready"
            else:
                detail = error.message if isinstance(error, CumuloError) else str(error)
                item.update(state="failed", detail=detail)
        return out

    def set_topology(self, deployment_id: str, roles: dict[str, list[dict[str, Any]]]) -> None:
        self.topology[deployment_id] = roles
        for guest in self.guests.values():
            if guest.spec.deployment_id == deployment_id:
                guest.set_topology(roles)

    def _push_topology(self, guest: Guest) -> None:
        roles = self.topology.get(guest.spec.deployment_id)
        if roles:
            guest.topology = roles

    def log_path(self, key: str, name: str) -> Path:
        guest = self.guest(key)
        if "/" in name or name.startswith("."):
            raise InputError(f"Log name '{name}' is not valid.")
        return Path(guest.paths.logs) / f"{name}.log"

    def states(self) -> dict[str, InstanceState]:
        return {k: g.state for k, g in self.guests.items()}
