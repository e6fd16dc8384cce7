"""The guest agent of one instance: prepare, startup tasks, entry point, watch, recycle, stop.

One asyncio task per instance runs ``Guest._run``; everything that happens to the instance goes
through its ``StateMachine`` (``cumulo.state.states``) and is emitted as an event. Lifecycle:

1. ``StartingRole``: instance directory, approot copied from the package, local resources, temp,
   limits (cgroups/rlimits), the SDK socket.
2. ``BusyRole``: startup tasks in document order — ``simple`` waited for (non-zero blocks the
   instance and is retried with backoff), ``background`` and ``foreground`` not waited for; then
   the entry point: a ProgramEntryPoint (Ready when it starts, or when ``cumulo.sdk.run``'s
   OnStart returns true) or the hosted site (Ready when the server listens).
3. ``ReadyRole``: exits are seen at once (pidfd); the SDK heartbeat (``status_check``) and custom
   probes run; ``set_busy`` makes it Busy until the next check.
4. Exit, hang (``UnresponsiveRole``), ``request_recycle`` or a cancelled change: the instance is
   stopped (gracefully unless hung), foreground tasks are waited for, local resources with
   ``cleanOnRoleRecycle`` are wiped, and it starts again after the restart policy's delay
   (``RestartingRole``, then ``CyclingRole`` in a crash loop; never given up).
5. Stop: out of rotation, ``Stopping`` to SDK connections (OnStop), SIGTERM to each process group,
   SIGKILL at the end of the grace period, the instance's cgroups swept, ``StoppedVM``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulo.clock import Clock
from cumulo.errors import ConflictError, CumuloError, InputError
from cumulo.host import limits as limits_mod
from cumulo.host import localdisk, logs, sitetls, spawner, users
from cumulo.host import usage as usage_mod
from cumulo.host.channel import Channel, Peer
from cumulo.host.environment import (
    InstancePaths,
    Placement,
    certificate_files,
    certificates_dir,
    platform_variables,
    resolve_variables,
    snapshot,
    xpath_context,
)
from cumulo.host.settings import HostSettings
from cumulo.state import health
from cumulo.state.restart import Failure, FailureKind, RestartHistory, next_action
from cumulo.state.spec import InstanceSpec, ProbeSpec, StartupTaskSpec
from cumulo.state.states import (
    InstanceState,
    StateChange,
    StateMachine,
    can_change,
    shortest_path,
)

EXEC_OUTPUT_LIMIT = 1024 * 1024
"""Bytes of a command's output that ``exec_command`` returns (the last ones)."""

S = InstanceState
Emit = Callable[..., None]


@dataclass
class HostContext:
    """What every guest agent of one host shares."""

    data_dir: Path
    settings: HostSettings
    clock: Clock
    runtime_path: str
    interpreter: str
    emit: Emit
    host_id: str = "host-0"
    cgroup_prefix: str = ""
    """``<host id>.<digest of the data directory>.``: names this agent's cgroups (two agents
    never share a data directory, so they never touch each other's groups)."""
    rand: Callable[[], float] = random.random
    users: users.InstanceUsers | None = None
    """Makes, finds and releases the per-instance users (None: run as the agent's user only,
    which is refused for limited instances when the agent is root)."""


@dataclass
class _Msg:
    kind: str
    detail: str = ""
    code: int | None = None
    data: Any = None


@dataclass
class _Task:
    index: int
    spec: StartupTaskSpec
    process: spawner.Process


@dataclass
class Limits:
    value: limits_mod.InstanceLimits | None = None


def safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key.replace("/", "."))


OPS = ("reboot", "reimage", "rebuild")


@dataclass
class Outcome:
    failure: Failure | None = None
    hung: bool = False
    op: str | None = None


class Guest:
    """The guest agent of one instance (see the module docstring)."""

    def __init__(
        self,
        ctx: HostContext,
        spec: InstanceSpec,
        placement: Placement,
        *,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.placement = placement
        self.key = spec.key
        self.root = ctx.data_dir / "instances" / safe_name(self.key)
        sock_dir = ctx.data_dir / "sock"
        self.paths = InstancePaths(
            root=str(self.root),
            approot=str(self.root / "approot"),
            temp=str(self.root / "temp"),
            logs=str(self.root / "logs"),
            socket=str(sock_dir / f"{hashlib.sha1(self.key.encode()).hexdigest()[:16]}.sock"),
            local={lr.name: str(self.root / "local" / lr.name) for lr in spec.local_resources},
        )
        initial = S.STARTING
        self._record = record
        if record is not None:
            with contextlib.suppress(ValueError, KeyError):
                initial = S(record["state"])
        self.machine = StateMachine(self.key, initial, now=ctx.clock.wall)
        self.machine.subscribe(self._on_change)
        self.history = RestartHistory()
        self.detail = ""
        self.topology: dict[str, list[dict[str, Any]]] = {}
        self.main: spawner.Process | None = None
        self.main_kind = ""
        self.tasks: list[_Task] = []
        self.limits = Limits()
        self.channel: Channel | None = None
        self.run_as: users.RunAs | None = None
        """The user of the role's entry point or site (its ``executionContext``)."""
        self.instance_user: users.RunAs | None = None
        """The instance's own user (limited processes run as it, private files belong to it);
        None while not known or when nothing of the instance runs limited."""
        self._inbox: asyncio.Queue[_Msg] = asyncio.Queue()
        self._op: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Task[Any]] = []
        self._prepared = False
        self._exec_count = 0
        self._attempt_started: float | None = None
        self._reached_ready = False
        self._busy = False
        self._leaving = False
        self.probe_status: dict[str, health.ProbeStatus] = {}
        self.removed = False
        self.stopped = asyncio.Event()
        self.quota_exceeded: dict[str, int] = {}
        self.role_envs: tuple[Any, ...] = ()
        self.local_storage_mode: str | None = None

    # -- public -----------------------------------------------------------------------------
    @property
    def state(self) -> InstanceState:
        return self.machine.state

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"guest {self.key}")

    async def stop(self) -> None:
        """Stop the instance (gracefully) and wait until every process is gone."""
        self._op = "stop"
        self._inbox.put_nowait(_Msg("op"))
        if self._task is not None:
            await asyncio.shield(self._task)

    async def detach(self) -> None:
        """Stop watching (agent shutdown): the instance's processes keep running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._watchers:
            w.cancel()
        if self.channel is not None:
            await self.channel.close()

    def request(self, op: str) -> None:
        """Reboot, reimage or rebuild (asynchronously)."""
        if op not in OPS:
            raise ValueError(op)
        self._op = op
        self._inbox.put_nowait(_Msg("op"))

    async def change_settings(self, spec: InstanceSpec) -> bool:
        """Apply new settings in place; True if applied online, False if the role cancelled."""
        old = self.spec.settings_dict()
        new = spec.settings_dict()
        changes = [
            {"kind": "setting", "name": n}
            for n in sorted(set(old) | set(new))
            if old.get(n) != new.get(n)
        ]
        cancel = False
        if self.channel is not None and self.channel.peers and changes:
            replies = await self.channel.request_all(
                {"type": "changing", "changes": changes}, timeout=30.0
            )
            cancel = any(r is not None and r.get("cancel") for _, r in replies)
        self.spec = spec
        self._write_record()
        if cancel:
            self._emit("instance.change_cancelled", changes=[c["name"] for c in changes])
            self._inbox.put_nowait(_Msg("recycle", "a changing handler cancelled the change"))
            return False
        if self.channel is not None:
            self.channel.broadcast({"type": "changed", "changes": changes, "env": self._snapshot()})
        self._emit("instance.changed", changes=[c["name"] for c in changes])
        return True

    def set_topology(self, topology: dict[str, list[dict[str, Any]]]) -> None:
        changed_roles = sorted(
            r for r in set(topology) | set(self.topology) if topology.get(r) != self.topology.get(r)
        )
        self.topology = topology
        if self.channel is not None and changed_roles:
            changes = [{"kind": "topology", "role": r} for r in changed_roles]
            self.channel.broadcast({"type": "changed", "changes": changes, "env": self._snapshot()})

    def observed(self) -> dict[str, Any]:
        now = self.ctx.clock.monotonic()
        ready = self.state is S.READY and not self._leaving
        endpoints = []
        for ep in self.spec.endpoints:
            probe_ok = None
            if ep.probe and ep.probe in self.probe_status:
                probe_ok = health.routable(self.probe_status[ep.probe], now)
            if ep.ignore_role_instance_status:
                routable = self.main is not None and self.main.is_running() and not self._leaving
            elif probe_ok is not None:
                routable = probe_ok and self.state in (S.READY, S.BUSY) and not self._leaving
            else:
                routable = ready
            endpoints.append(
                {
                    "name": ep.name,
                    "kind": ep.kind,
                    "protocol": ep.protocol,
                    "port": ep.port,
                    "address": self.placement.address,
                    "local_port": self.placement.ports.get(ep.name),
                    "routable": routable,
                }
            )
        tail: list[str] = []
        if self.main_kind:
            tail = logs.tail(Path(self.paths.logs) / f"{self.main_kind}.log", 20)
        return {
            "key": self.key,
            "deployment_id": self.spec.deployment_id,
            "service": self.spec.service,
            "slot": self.spec.slot,
            "role": self.spec.role,
            "instance_id": self.spec.instance_id,
            "update_domain": self.spec.update_domain,
            "fault_domain": self.spec.fault_domain,
            "state": self.state.value,
            "since": self.machine.since,
            "detail": self.detail,
            "ready": ready,
            "address": self.placement.address,
            "endpoints": endpoints,
            "pid": self.main.pid if self.main is not None and self.main.is_running() else None,
            "user": self.run_as.name if self.run_as is not None else None,
            "sdk_connected": self.channel is not None and bool(self.channel.peers),
            "limits": self.limits.value.mode if self.limits.value is not None else None,
            "restarts": self.history.total,
            "consecutive_failures": self.history.consecutive,
            "last_exit_code": self.history.last_exit_code,
            "quota_exceeded": dict(self.quota_exceeded),
            "local_storage": self.local_storage_mode,
            "usage": self._usage(),
            "log_tail": tail,
        }

    def _usage(self) -> dict[str, float]:
        """``cpu_seconds`` and ``memory_mb`` (from the instance's cgroups, else from /proc for
        its main process's session) and ``cores``, the VM size's share of the machine."""
        found = self.limits.value.usage() if self.limits.value is not None else {}
        pid = self.main.pid if self.main is not None and self.main.is_running() else None
        if pid is not None and ("cpu_seconds" not in found or "memory_mb" not in found):
            found = usage_mod.process_usage([pid]).get(pid, {}) | found
        return {**found, "cores": self.spec.limits.cores}

    # -- state & events ---------------------------------------------------------------------
    def _on_change(self, change: StateChange) -> None:
        self._emit(
            "instance.state", old=change.old.value, new=change.new.value, reason=change.reason
        )
        self._write_record()

    def _emit(self, event: str, **fields: Any) -> None:
        self.ctx.emit(event, self.key, **fields)

    def _go(self, target: InstanceState, reason: str) -> None:
        """Move to ``target`` along allowed edges only (through intermediate states if needed)."""
        self.detail = reason
        if self.state is target:
            self._write_record()
            return
        if can_change(self.state, target):
            self.machine.change_state(target, reason)
            return
        # Not expected: every move the guest makes is a direct edge. Stay legal, and say so.
        self._emit("instance.indirect_transition", old=self.state.value, new=target.value)
        for step in shortest_path(self.state, target):
            self.machine.change_state(step, reason)

    # -- the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug must not leave the instance unwatched
                    self._emit("instance.agent_error", error=repr(exc))
                    self.detail = f"the guest agent hit an error ({exc!r}); retrying"
                    self._record = None
                    await self.ctx.clock.sleep(1.0)
        finally:
            for w in self._watchers:
                w.cancel()
            self.stopped.set()

    async def _loop(self) -> None:
        """Adopt (after an agent restart), then attempt, recycle and back off until stopped."""
        outcome: Outcome | None = None
        if self._record is not None:
            outcome = await self._adopt()
            self._record = None
        while True:
            if self._op == "stop":
                break
            if outcome is None:
                outcome = await self._attempt()
            if outcome.op == "stop" or self._op == "stop":
                break
            if outcome.op in OPS:
                await self._do_op(outcome.op)
                outcome = None
                continue
            failure = outcome.failure
            assert failure is not None
            failed_at = self.ctx.clock.monotonic()
            decision = next_action(
                self.ctx.settings.restart,
                self.history,
                failure,
                now=failed_at,
                rand=self.ctx.rand(),
            )
            self.history = decision.history
            # The waiting state is shown at once (RestartingRole, CyclingRole, ...) while what is
            # left of the attempt is stopped; the delay counts from the failure.
            self._go(decision.state, decision.reason)
            self._emit(
                "instance.backoff",
                delay=round(decision.delay, 3),
                attempt=self.history.consecutive,
                exit_code=failure.exit_code,
            )
            await self._teardown(outcome)
            if self._op == "stop":
                break
            if self._op in OPS:
                outcome = Outcome(op=self._op)
                continue
            self.detail = decision.reason
            outcome = None
            remaining = decision.delay - (self.ctx.clock.monotonic() - failed_at)
            if await self._sleep_or_op(max(0.0, remaining)):
                outcome = Outcome(op=self._op)
        await self._shutdown("stop requested")

    async def _sleep_or_op(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True if an operation arrived meanwhile."""
        sleeper = asyncio.ensure_future(self.ctx.clock.sleep(delay))
        try:
            while True:
                getter = asyncio.ensure_future(self._inbox.get())
                done, _ = await asyncio.wait({sleeper, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    if getter.result().kind == "op":
                        return True
                    continue
                getter.cancel()
                return False
        finally:
            sleeper.cancel()

    # -- prepare ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Directories, approot, local resources, limits. Raises CumuloError or OSError.

        Private things (approot, temp, local storage, certificate keys) belong to the instance's
        user, mode 0700/0600; the directories holding them (the instance's, ``local/``,
        ``logs/``, ``certificates/``) belong to the agent, so the role can neither rename nor
        replace what the agent later opens, mounts or deletes as root."""
        spec = self.spec
        self.run_as = self._user_for(spec.execution_context)
        owner = self.instance_user or users.current()
        root_agent = os.geteuid() == 0
        if root_agent and owner.switches:
            blocked = _untraversable_parent(self.root.parent)
            if blocked is not None:
                raise CumuloError(
                    f"The instance directory {self.root} cannot be reached by the instance's "
                    f"user '{owner.name}': {blocked} is not traversable by others "
                    "(chmod o+x it, or give the host agent a data directory under /srv or /var)."
                )
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        approot = Path(self.paths.approot)
        if not approot.exists():
            source = Path(spec.approot_source)
            if not source.is_dir():
                raise CumuloError(
                    f"The approot source '{source}' of instance '{self.key}' is not a directory."
                )
            shutil.copytree(source, approot, symlinks=True)
        if self.role_envs:
            from cumulo.host import roleenv

            roleenv.link_into_approot(self.role_envs, approot)
        for d in (self.paths.temp, self.paths.logs, *self.paths.local.values()):
            Path(d).mkdir(parents=True, exist_ok=True)
        if self.paths.local:
            _own(self.root / "local", None, 0o711)
        self._mount_local_storage(owner)
        self._write_certificates(owner)
        for private in (approot, Path(self.paths.temp), *map(Path, self.paths.local.values())):
            if root_agent:
                _give_tree(private, owner.uid, owner.gid)
            os.chmod(private, 0o700)
        _own_logs(Path(self.paths.logs), owner.gid if root_agent else None)
        Path(self.paths.socket).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(Path(self.paths.socket).parent, 0o711)
        self.limits.value = limits_mod.create(
            self._cgroup_name(), spec.limits, use_cgroups=self.ctx.settings.use_cgroups
        )
        _write_private(self.root / "spec.json", spec.dumps())  # may hold private keys
        self._prepared = True

    async def _ensure_role_env(self) -> None:
        """The role's dependency environment (requirements.txt, package.json), built once and
        cached by ``cumulo.host.roleenv``; nothing when the role declares no dependencies."""
        from cumulo.host import roleenv

        source = Path(self.spec.approot_source)
        if not roleenv.detect(source).declared:
            self.role_envs = ()
            return
        options = roleenv.options_from_environ(
            base=roleenv.BuildOptions(python=self.ctx.interpreter)
        )
        self.detail = "building the role's dependency environment"
        envs = await asyncio.to_thread(
            roleenv.ensure, source, self.ctx.data_dir / "roleenv", options
        )
        self.role_envs = envs
        self._emit(
            "roleenv.ready",
            environments=[
                {"kind": e.kind, "path": str(e.path), "built": e.built_now} for e in envs
            ],
        )

    def _write_certificates(self, owner: users.RunAs) -> None:
        """The role's certificates as files: ``<THUMBPRINT>.crt`` (readable by all) and, when
        the store holds its private key, ``<THUMBPRINT>.key`` (0600, owned by the instance's
        user, or by the agent's for ``permissionLevel="elevated"``). Rewritten at every start,
        so a new thumbprint in the .cscfg takes effect with the recycle it causes."""
        directory = Path(certificates_dir(self.paths))
        shutil.rmtree(directory, ignore_errors=True)
        if not self.spec.certificates:
            return
        directory.mkdir(parents=True)
        os.chmod(directory, 0o711)
        for cert in self.spec.certificates:
            crt, key = certificate_files(self.paths, cert.thumbprint)
            blocks = _pem_blocks(cert.pem)
            public = "".join(b for b in blocks if "PRIVATE KEY-----" not in b)
            secret = "".join(b for b in blocks if "PRIVATE KEY-----" in b)
            Path(crt).write_text(public)
            os.chmod(crt, 0o644)
            if secret:
                _write_private(Path(key), secret)
                elevated_only = cert.permission_level == "elevated"
                if os.geteuid() == 0 and owner.switches and not elevated_only:
                    os.chown(key, owner.uid, owner.gid)

    def _mount_local_storage(self, owner: users.RunAs) -> None:
        """Hard quotas: one loop-mounted filesystem per LocalStorage (see ``localdisk``)."""
        if not self.spec.local_resources:
            return
        if not (self.ctx.settings.hard_quota and localdisk.available()):
            self.local_storage_mode = "soft-quota"
            return
        try:
            for lr in self.spec.local_resources:
                localdisk.ensure(
                    Path(self.paths.local[lr.name]),
                    self.root / "disks" / f"{safe_name(lr.name)}.ext4",
                    lr.size_mb,
                    owner.uid,
                    owner.gid,
                )
            self.local_storage_mode = "ext4-loop"
        except OSError as exc:
            self.local_storage_mode = "soft-quota"
            self._emit("localresource.soft_quota", reason=_sentence(exc))

    def _cgroup_name(self) -> str:
        return safe_name(f"{self.ctx.cgroup_prefix or self.ctx.host_id + '.'}{self.key}")

    async def _open_channel(self) -> None:
        if self.channel is not None:
            return
        user = self.instance_user
        owner = (user.uid, user.gid) if user is not None and user.switches else None
        self.channel = Channel(
            self.paths.socket,
            self._snapshot,
            self._on_peer,
            owner=owner,
            authorize=self._is_own_process,
        )
        await self.channel.start()
        if owner is not None and os.geteuid() == 0:
            # The instance's user and root (elevated tasks) reach it; no other instance's user.
            os.chmod(self.paths.socket, 0o660)

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(
            self.spec, self.placement, self.paths, self.spec.settings_dict(), self.topology
        )

    def _is_own_process(self, pid: int, uid: int | None = None) -> bool:
        """True when ``pid`` belongs to this instance: it runs as the instance's user or the
        agent's (``uid``, from the socket's peer credentials) and is in the session of one of
        its processes (each is started as a session leader) or in its cgroup."""
        if uid is not None and uid not in self._own_uids():
            return False
        sessions = {t.process.pid for t in self.tasks}
        if self.main is not None:
            sessions.add(self.main.pid)
        try:
            if os.getsid(pid) in sessions:
                return True
        except OSError:
            return False
        return self.limits.value is not None and pid in self.limits.value.pids()

    def _own_uids(self) -> set[int]:
        own = {os.geteuid()}
        if self.instance_user is not None:
            own.add(self.instance_user.uid)
        return own

    def _on_peer(self, event: str, peer: Peer) -> None:
        if event == "started" and peer.entry_point:
            self._inbox.put_nowait(_Msg("started"))
        elif event == "recycle":
            self._inbox.put_nowait(_Msg("recycle", "the role asked for a recycle"))
        elif event == "hello":
            self._emit("sdk.connected", pid=peer.pid, entry_point=peer.entry_point)
        elif event == "rejected":
            self._emit("sdk.rejected", pid=peer.pid)

    # -- environment & commands -------------------------------------------------------------
    def _environment(self, extra: tuple[Any, ...] = ()) -> dict[str, str]:
        settings = self.spec.settings_dict()
        context = xpath_context(self.spec, self.placement, self.paths, settings)
        env = platform_variables(
            self.spec,
            self.placement,
            self.paths,
            runtime_path=self.ctx.runtime_path,
            interpreter=self.ctx.interpreter,
        )
        if self.role_envs:
            from cumulo.host import roleenv

            env.update(roleenv.instance_variables(self.role_envs, env["PATH"]))
        env.update(resolve_variables(self.spec.environment, context))
        env.update(resolve_variables(extra, context))
        return env

    def _argv(self, command_line: str) -> list[str]:
        try:
            argv = shlex.split(command_line)
        except ValueError as exc:
            raise CumuloError(f"Cannot parse command line {command_line!r}: {exc}.") from None
        if not argv:
            raise CumuloError(f"The command line of instance '{self.key}' is empty.")
        first = argv[0]
        python = self._python()
        if first in ("python", "python3", "python.exe"):
            return [python, *argv[1:]]
        path = Path(self.paths.approot) / first
        if first.endswith(".py"):
            return [python, str(path), *argv[1:]]
        if first.endswith((".sh", ".cmd", ".bat")):
            return ["/bin/sh", str(path), *argv[1:]]
        if not os.path.isabs(first) and path.exists():
            return [str(path), *argv[1:]]
        return argv

    async def exec_command(self, argv: list[str], timeout: float) -> dict[str, Any]:
        """Run ``argv`` in the instance's context — its user, environment, approot, limits — and
        return ``{"exit_code", "output", "timed_out"}`` (stdout and stderr together, the last
        ``EXEC_OUTPUT_LIMIT`` bytes). A command still running after ``timeout`` seconds is killed
        with its whole process group. ``python`` means the role's interpreter, as in command
        lines of the .csdef."""
        if not argv:
            raise InputError("An exec command needs at least a program name.")
        if not self._prepared or self.removed:
            raise ConflictError(
                f"Instance '{self.key}' is {self.state.value}; a command runs only in a prepared "
                "instance."
            )
        self._exec_count += 1
        name = f"exec-{self._exec_count}"
        log_path = Path(self.paths.logs) / f"{name}.log"
        log_path.unlink(missing_ok=True)
        resolved = self._argv(shlex.join(argv))
        try:
            process = self._spawn(resolved, self._environment(), name, self.spec.execution_context)
        except OSError as exc:
            raise InputError(f"Cannot run {argv[0]!r} in instance '{self.key}': {exc}.") from None
        timed_out = False
        try:
            code = await asyncio.wait_for(asyncio.shield(process.exited()), timeout)
        except TimeoutError:
            timed_out = True
            process.signal_group(signal.SIGKILL)
            code = await process.exited()
        try:
            with open(log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - EXEC_OUTPUT_LIMIT))
                output = f.read().decode("utf-8", "replace")
        except OSError:
            output = ""
        log_path.unlink(missing_ok=True)
        self._emit("instance.exec", argv=argv, exit_code=code, timed_out=timed_out)
        return {"exit_code": code, "output": output, "timed_out": timed_out}

    def _needs_user(self) -> bool:
        """True when something of the instance runs ``limited`` (then it has its own user)."""
        return self.spec.execution_context == "limited" or any(
            t.execution_context == "limited" for t in self.spec.startup_tasks
        )

    def _user_for(self, context: str) -> users.RunAs:
        """Who runs a process of ``context``: the instance's user (limited) or the agent's."""
        if context != "limited":
            return users.current()
        if self.instance_user is not None:
            return self.instance_user
        if os.geteuid() != 0:
            return users.current()
        raise CumuloError(f"Instance '{self.key}' has no user of its own for limited processes.")

    async def _ensure_user(self, previous: users.RunAs | None = None) -> None:
        """Find or make the instance's own user (see ``cumulo.host.users``)."""
        if not self._needs_user() or self.instance_user is not None:
            return
        if self.ctx.users is None:
            self.instance_user = self._user_for("elevated") if os.geteuid() != 0 else None
            return
        self.instance_user = await asyncio.to_thread(
            self.ctx.users.for_instance, self.root.name, previous
        )

    def _python(self) -> str:
        """The role's venv python when it has one, else the role interpreter."""
        for env in self.role_envs:
            if env.kind == "python":
                return str(Path(env.bin_dir) / "python")
        return self.ctx.interpreter

    def _spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        log: str,
        context: str,
        pass_fds: tuple[int, ...] = (),
    ) -> spawner.Process:
        run_as = self._user_for(context)
        cwd = self.paths.approot
        return spawner.spawn(
            spawner.ProcessSpec(
                argv=tuple(argv),
                cwd=cwd,
                env=env,
                log_path=str(Path(self.paths.logs) / f"{log}.log"),
                uid=run_as.uid if run_as.switches else None,
                gid=run_as.gid if run_as.switches else None,
                limits=self.limits.value,
                pass_fds=pass_fds,
            )
        )

    def _spawn_entry(self) -> tuple[spawner.Process | None, str]:
        """Start the entry point: (process, ready mode 'start' | 'sdk' | 'none')."""
        spec = self.spec
        env = self._environment()
        if spec.site is not None:
            site = spec.site
            http = [
                ep
                for ep in spec.endpoints
                if (ep.name in site.bindings)
                or (not site.bindings and ep.kind == "input" and ep.protocol in ("http", "https"))
            ]
            if not http:
                raise CumuloError(
                    f"Site '{site.name}' of role '{spec.role}' has no http endpoint to bind to."
                )
            # https bindings are served with TLS by the site itself (cumulo.host.sitetls).
            tls = sitetls.site_tls(spec, self.paths, http)
            env.update(
                {
                    "CUMULO_SITE_TLS": json.dumps(
                        {
                            f"{self.placement.address}:{self.placement.ports[name]}": list(files)
                            for name, files in tls.items()
                        }
                    ),
                    "CUMULO_SITE_KIND": site.kind,
                    "CUMULO_SITE_APP": site.app,
                    "CUMULO_SITE_DIR": str(Path(self.paths.approot) / site.physical_directory),
                    "CUMULO_SITE_MOUNTS": json.dumps(site.mounts(self.paths.approot)),
                    "CUMULO_SITE_WORKERS": str(max(2, int(spec.limits.cores))),
                    "CUMULO_STOP_GRACE": str(spec.stop_grace_s),
                    "CUMULO_SITE_BIND": ",".join(
                        f"{self.placement.address}:{self.placement.ports[ep.name]}" for ep in http
                    ),
                }
            )
            self.main_kind = "site"
            if spec.entry_point is not None:
                self._emit(
                    "instance.entry_point_ignored",
                    reason="a web role with a Site runs the hosted site; its ProgramEntryPoint "
                    "is not started",
                )
            # The agent binds the site's sockets and hands them over (as systemd socket
            # activation does): a limited role may then serve on a port below 1024.
            addresses = [(self.placement.address, self.placement.ports[ep.name]) for ep in http]
            sockets = _listen(addresses)
            try:
                env["CUMULO_SITE_FDS"] = ",".join(str(sock.fileno()) for sock in sockets)
                argv = [self._python(), "-m", "cumulo_sitehost"]
                fds = tuple(sock.fileno() for sock in sockets)
                return self._spawn(argv, env, "site", spec.execution_context, fds), "sdk"
            finally:
                for sock in sockets:
                    sock.close()
        if spec.entry_point is not None:
            argv = self._argv(spec.entry_point.command_line)
            self.main_kind = "entry"
            sdk = "cumulo.sdk.run" in argv
            mode = "sdk" if sdk or not spec.entry_point.set_ready_on_process_start else "start"
            return self._spawn(argv, env, "entry", spec.execution_context), mode
        return None, "none"

    # -- an attempt: tasks, entry point, watching ------------------------------------------
    async def _attempt(self) -> Outcome:
        now = self.ctx.clock.monotonic()
        self._attempt_started = now
        self._reached_ready = False
        self._leaving = False
        self._busy = False
        self.probe_status.clear()
        try:
            if not self._prepared:
                if self.state is not S.STARTING:
                    self._go(S.STARTING, "preparing the instance")
                await self._ensure_role_env()
                await self._ensure_user()
                self._prepare()
            await self._open_channel()
        except (CumuloError, OSError) as exc:
            return Outcome(Failure(FailureKind.PREPARE, None, None, _sentence(exc)))
        self._go(S.BUSY, "running startup tasks")
        self._drain_inbox()
        for index, task in enumerate(self.spec.startup_tasks, start=1):
            label = f"startup task {index} ({task.task_type}: {task.command_line})"
            try:
                argv = self._argv(task.command_line)
                env = self._environment(task.environment)
                process = self._spawn(argv, env, f"task{index}", task.execution_context)
            except (CumuloError, OSError) as exc:
                self._prepared = False  # prepare again next time (e.g. a cgroup removed)
                return Outcome(
                    Failure(FailureKind.STARTUP_TASK, now, None, f"{label}: {_sentence(exc)}")
                )
            self._emit("task.started", index=index, type=task.task_type, pid=process.pid)
            self.tasks.append(_Task(index, task, process))
            if task.task_type != "simple":
                continue
            self.detail = f"running {label}"
            msg = await self._wait_exit_or_op(process)
            if msg is not None:
                return Outcome(op=self._op)
            code = process.returncode
            self._emit("task.exited", index=index, code=code)
            self.tasks.remove(next(t for t in self.tasks if t.process is process))
            if code != 0:
                return Outcome(
                    Failure(FailureKind.STARTUP_TASK, now, code, f"{label} exited {code}")
                )
        try:
            self.main, mode = self._spawn_entry()
        except (CumuloError, OSError) as exc:
            kind = FailureKind.PREPARE
            return Outcome(
                Failure(kind, now, None, f"the entry point cannot start: {_sentence(exc)}")
            )
        if self.main is not None:
            self._emit("instance.started", pid=self.main.pid, kind=self.main_kind)
            self._write_record()
        if mode in ("start", "none"):
            self._become_ready("the entry point started" if mode == "start" else "no entry point")
        else:
            self.detail = "waiting for OnStart" if self.main_kind == "entry" else "site starting"
        return await self._watch()

    def _drain_inbox(self) -> None:
        while not self._inbox.empty():
            msg = self._inbox.get_nowait()
            if msg.kind == "op":
                self._inbox.put_nowait(msg)
                return

    async def _wait_exit_or_op(self, process: spawner.Process) -> _Msg | None:
        exited: asyncio.Future[Any] = process.exited()
        while True:
            getter: asyncio.Future[Any] = asyncio.ensure_future(self._inbox.get())
            done, _ = await asyncio.wait({exited, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                msg: _Msg = getter.result()
                if msg.kind == "op":
                    return msg
                continue
            getter.cancel()
            return None

    def _become_ready(self, reason: str) -> None:
        self._reached_ready = True
        self._go(S.READY, reason)

    async def _watch(self) -> Outcome:
        """Watch a running instance until it exits, hangs, recycles or an operation comes."""
        started = self._attempt_started
        if self.main is not None:
            self._watch_exit(self.main, "main")
        for t in self.tasks:
            if t.spec.task_type == "foreground" or t.spec.task_type == "background":
                self._watch_exit(t.process, f"task{t.index}")
        self._watchers.append(asyncio.create_task(self._heartbeat()))
        self._start_probes()
        self._watchers.append(asyncio.create_task(self._housekeeping()))
        try:
            while True:
                msg = await self._inbox.get()
                if msg.kind == "op":
                    return Outcome(op=self._op)
                if msg.kind == "started":
                    if self.state is S.BUSY and not self._busy:
                        self._become_ready(
                            "OnStart returned true"
                            if self.main_kind == "entry"
                            else "the site is listening"
                        )
                    else:
                        self._reached_ready = True
                elif msg.kind == "exit" and msg.data == "main":
                    code = self.main.returncode if self.main is not None else None
                    shown = "unknown (adopted process)" if code is None else str(code)
                    self._emit(
                        "instance.exited", code=code, pid=self.main.pid if self.main else None
                    )
                    return Outcome(
                        Failure(
                            FailureKind.EXITED,
                            started,
                            code,
                            f"the {self.main_kind} process exited with code {shown}",
                        )
                    )
                elif msg.kind == "exit":
                    self._emit("task.exited", task=msg.data, code=msg.code)
                elif msg.kind == "recycle":
                    self._emit("instance.recycle_requested", reason=msg.detail)
                    return Outcome(Failure(FailureKind.RECYCLE, started, None, msg.detail))
                elif msg.kind == "hung":
                    self._go(S.UNRESPONSIVE, msg.detail)
                    self._emit("instance.unresponsive", reason=msg.detail)
                    return Outcome(
                        Failure(FailureKind.UNRESPONSIVE, started, None, msg.detail), hung=True
                    )
                elif msg.kind == "busy":
                    if self.state is S.READY:
                        self._go(S.BUSY, "a status_check handler called set_busy")
                elif msg.kind == "unbusy" and self.state is S.BUSY and self._reached_ready:
                    self._go(S.READY, "no status_check handler is busy")
        finally:
            for w in self._watchers:
                w.cancel()
            self._watchers.clear()

    def _watch_exit(self, process: spawner.Process, name: str) -> None:
        async def watch() -> None:
            code = await process.exited()
            self._inbox.put_nowait(_Msg("exit", code=code, data=name))

        self._watchers.append(asyncio.create_task(watch()))

    async def _heartbeat(self) -> None:
        hb = self.ctx.settings.heartbeat
        while True:
            await self.ctx.clock.sleep(hb.interval_s)
            channel = self.channel
            if channel is None or not channel.peers:
                continue
            replies = await channel.request_all({"type": "status_check"}, timeout=hb.timeout_s)
            lost = [
                p
                for p, r in replies
                if r is None
                and p in channel.peers
                and (p.entry_point or (self.main is not None and p.pid == self.main.pid))
            ]
            if lost:
                self._inbox.put_nowait(
                    _Msg("hung", f"the role did not answer its heartbeat within {hb.timeout_s:g} s")
                )
                return
            busy = any(r is not None and r.get("busy") for _, r in replies)
            if busy != self._busy:
                self._busy = busy
                self._inbox.put_nowait(_Msg("busy" if busy else "unbusy"))

    def _start_probes(self) -> None:
        for ep in self.spec.endpoints:
            if not ep.probe:
                continue
            probe = next((p for p in self.spec.probes if p.name == ep.probe), None)
            if probe is None or ep.probe in self.probe_status:
                continue
            port = probe.port or self.placement.ports.get(ep.name)
            if port is None:
                continue
            scale = self.ctx.settings.probes.scale
            self.probe_status[probe.name] = health.ProbeStatus(
                probe.interval_s * scale,
                probe.timeout_s * scale,
                self.ctx.settings.probes.liveness_factor,
                since=self.ctx.clock.monotonic(),
            )
            self._watchers.append(asyncio.create_task(self._probe_loop(probe, port)))

    async def _probe_loop(self, probe: ProbeSpec, port: int) -> None:
        was_ok: bool | None = None
        while True:
            status = self.probe_status[probe.name]
            await self.ctx.clock.sleep(status.interval_s)
            ok, error = await run_probe(
                probe, self.placement.address, port, min(status.interval_s, status.timeout_s)
            )
            now = self.ctx.clock.monotonic()
            status = health.record(self.probe_status[probe.name], ok, now, error)
            self.probe_status[probe.name] = status
            if ok != was_ok:
                self._emit("probe.ok" if ok else "probe.failed", probe=probe.name, error=error)
                was_ok = ok
            if health.hung(status, now) and self.state in (S.READY, S.BUSY):
                self._inbox.put_nowait(
                    _Msg(
                        "hung",
                        f"probe '{probe.name}' has not succeeded for "
                        f"{now - (status.last_success or status.since):.1f} s ({error})",
                    )
                )
                return

    async def _housekeeping(self) -> None:
        """Log rotation and local-resource quotas, every ``logs.check_interval_s``."""
        settings = self.ctx.settings.logs
        while True:
            await self.ctx.clock.sleep(settings.check_interval_s)
            for f in Path(self.paths.logs).glob("*.log"):
                if logs.rotate_if_needed(f, settings.max_bytes, settings.keep):
                    self._emit("log.rotated", file=f.name)
            for lr in self.spec.local_resources:
                used = await asyncio.to_thread(_usage_mb, self.paths.local[lr.name])
                if used > lr.size_mb and lr.name not in self.quota_exceeded:
                    self.quota_exceeded[lr.name] = used
                    self._emit(
                        "localresource.over_quota", name=lr.name, used_mb=used, size_mb=lr.size_mb
                    )
                elif used <= lr.size_mb:
                    self.quota_exceeded.pop(lr.name, None)

    # -- teardown ---------------------------------------------------------------------------
    async def _teardown(self, outcome: Outcome) -> None:
        """Stop what runs of a failed attempt and get ready to start again."""
        assert outcome.failure is not None
        graceful = not outcome.hung and outcome.failure.kind is FailureKind.RECYCLE
        await self._stop_processes(graceful=graceful, recycle=True)
        if outcome.failure.kind is FailureKind.PREPARE:
            self._prepared = False
        self._clean_local(only_flagged=True)

    async def _stop_processes(self, *, graceful: bool, recycle: bool) -> None:
        self._leaving = True
        grace = self.spec.stop_grace_s
        deadline = self.ctx.clock.monotonic() + grace
        main = self.main
        if graceful and main is not None and main.is_running():
            if self.ctx.settings.drain_s > 0:
                await self.ctx.clock.sleep(self.ctx.settings.drain_s)
            if self.channel is not None and self.channel.peers:
                self._emit("instance.stopping_sent", peers=len(self.channel.peers))
                await self.channel.request_all({"type": "stopping"}, timeout=grace)
        if main is not None:
            if main.is_running():
                main.signal(signal.SIGCONT)
            await self._terminate(main, deadline if graceful else self.ctx.clock.monotonic())
        foreground = [t for t in self.tasks if t.spec.task_type == "foreground"]
        for t in self.tasks:
            if t.spec.task_type == "foreground" and recycle:
                continue
            await self._terminate(t.process, deadline if graceful else self.ctx.clock.monotonic())
        if recycle:
            for t in foreground:
                if t.process.is_running():
                    self.detail = f"waiting for foreground task {t.index} to exit before recycling"
                    self._emit("instance.waiting_foreground", index=t.index, pid=t.process.pid)
                    msg = await self._wait_exit_or_op(t.process)
                    if msg is not None:
                        self._inbox.put_nowait(msg)
                        await self._terminate(t.process, self.ctx.clock.monotonic())
                t.process.signal_group(signal.SIGKILL)
        self.tasks.clear()
        if self.limits.value is not None:
            for _ in range(20):
                if not self.limits.value.kill_all():
                    break
                await asyncio.sleep(0.05)
        self.main = None
        self._write_record()

    async def _terminate(self, process: spawner.Process, deadline: float) -> None:
        """SIGTERM the process group, SIGKILL it at ``deadline``, wait for the leader's exit."""
        if process.is_running():
            process.signal_group(signal.SIGTERM)
            remaining = deadline - self.ctx.clock.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.exited()), remaining)
        process.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.exited()), 10.0)

    def _clean_local(self, *, only_flagged: bool) -> None:
        for lr in self.spec.local_resources:
            if only_flagged and not lr.clean_on_role_recycle:
                continue
            _empty_dir(Path(self.paths.local[lr.name]))
        _empty_dir(Path(self.paths.temp))

    async def _shutdown(self, reason: str) -> None:
        self._go(S.STOPPING, reason)
        await self._stop_processes(graceful=True, recycle=False)
        self._go(S.STOPPED, reason)
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    async def _do_op(self, op: str) -> None:
        self._op = None
        self._emit(f"instance.{op}")
        await self._shutdown(f"{op} requested")
        if op in ("reimage", "rebuild"):
            shutil.rmtree(self.paths.approot, ignore_errors=True)
            self._prepared = False
        if op == "rebuild":
            localdisk.release_all_under(self.root)
            shutil.rmtree(self.root / "disks", ignore_errors=True)
            for path in self.paths.local.values():
                shutil.rmtree(path, ignore_errors=True)
        if op == "reimage":
            self._clean_local(only_flagged=True)
        self._go(S.STARTING, f"starting after {op}")
        self.history = RestartHistory(total=self.history.total)

    # -- adoption ---------------------------------------------------------------------------
    async def _adopt(self) -> Outcome:
        record = self._record or {}
        main = record.get("main") or {}
        process = None
        if main.get("pid"):
            process = spawner.adopt(int(main["pid"]), main.get("ticks"))
        self._prepared = True
        recorded = record.get("user") or None
        previous = None
        if isinstance(recorded, dict):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                previous = users.RunAs(
                    int(recorded["uid"]), int(recorded["gid"]), str(recorded["name"])
                )
        ended = "its process ended while the host agent was away"
        try:
            await self._ensure_user(previous)
            self.run_as = self._user_for(self.spec.execution_context)
        except (CumuloError, OSError) as exc:
            self.run_as = None
            self._prepared = False
            ended = f"its user cannot be found or made again ({_sentence(exc)})"
            process = None
        if process is not None and self.run_as is not None:
            running_as = _process_uid(process.pid)
            if running_as is not None and running_as != self.run_as.uid:
                # its user was deleted and made anew, or an older agent started it as another
                # user: it starts again, as its own user, with its files given to it
                self._prepared = False
                ended = (
                    f"it ran as uid {running_as}, not as its user '{self.run_as.name}' "
                    f"(uid {self.run_as.uid}); started again as its user"
                )
                process = None
        self.limits.value = limits_mod.create(
            self._cgroup_name(), self.spec.limits, use_cgroups=self.ctx.settings.use_cgroups
        )
        self.history = RestartHistory(
            consecutive=int(record.get("consecutive", 0)), total=int(record.get("restarts", 0))
        )
        with contextlib.suppress(CumuloError, OSError):
            await self._ensure_role_env()  # cached: a lookup, not a build
        await self._open_channel()
        if process is None:
            self._emit("instance.adopt_failed", pid=main.get("pid"), reason=ended)
            # its main process ended while no agent watched: end what is left of its group
            # (a pid the kernel gave to a new process cannot still name an old group)
            for item in [main, *(record.get("tasks") or [])]:
                pid = item.get("pid")
                ticks = spawner.proc_start_ticks(int(pid)) if pid else None
                if pid and ticks in (None, item.get("ticks")):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(pid), signal.SIGKILL)
            return Outcome(Failure(FailureKind.EXITED, None, None, ended))
        self.main = process
        self.main_kind = str(main.get("kind") or "entry")
        for t in record.get("tasks") or []:
            p = spawner.adopt(int(t["pid"]), t.get("ticks"))
            index = int(t["index"])
            if p is not None and 0 < index <= len(self.spec.startup_tasks):
                self.tasks.append(_Task(index, self.spec.startup_tasks[index - 1], p))
        self._attempt_started = self.ctx.clock.monotonic()
        self._reached_ready = self.state is S.READY
        self._emit("instance.adopted", pid=process.pid, state=self.state.value)
        if self.state not in (S.READY, S.BUSY):
            self._go(S.BUSY, "adopted")
        return await self._watch()

    def _write_record(self) -> None:
        if not self.root.exists():
            return
        record = {
            "key": self.key,
            "state": self.state.value,
            "placement": {"address": self.placement.address, "ports": dict(self.placement.ports)},
            "main": (
                {"pid": self.main.pid, "ticks": self.main.start_ticks, "kind": self.main_kind}
                if self.main is not None
                else None
            ),
            "tasks": [
                {"index": t.index, "pid": t.process.pid, "ticks": t.process.start_ticks}
                for t in self.tasks
            ],
            "restarts": self.history.total,
            "consecutive": self.history.consecutive,
            "user": (
                {
                    "name": self.instance_user.name,
                    "uid": self.instance_user.uid,
                    "gid": self.instance_user.gid,
                }
                if self.instance_user is not None
                else None
            ),
        }
        tmp = self.root / "record.json.tmp"
        with contextlib.suppress(OSError):
            _write_private(tmp, json.dumps(record))
            tmp.replace(self.root / "record.json")
            _write_private(self.root / "spec.json", self.spec.dumps())


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, CumuloError):
        return exc.message
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def _untraversable_parent(path: Path) -> Path | None:
    """The first directory from / down to ``path`` that others cannot traverse, if any."""
    current = path.resolve()
    for directory in [*reversed(current.parents), current]:
        try:
            if not os.stat(directory).st_mode & 0o001:
                return directory
        except OSError:
            return directory
    return None


def _give_tree(top: Path, uid: int, gid: int) -> None:
    """Make ``top`` and everything in it belong to ``uid``:``gid``, unless ``top`` already does
    (what is in it is then the user's own). Walks by directory descriptors, never following a
    symlink, and changes ``top`` last, so an interrupted walk is done again next time."""
    st = os.lstat(top)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    for _path, dirs, files, dir_fd in os.fwalk(top, topdown=False, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    os.chown(top, uid, gid, follow_symlinks=False)


def _own(path: Path, gid: int | None, mode: int) -> None:
    """``path`` belongs to the agent (group ``gid`` if given), with ``mode``."""
    if os.geteuid() == 0:
        os.chown(path, 0, 0 if gid is None else gid, follow_symlinks=False)
    os.chmod(path, mode)


def _own_logs(logs_dir: Path, gid: int | None) -> None:
    """``logs/`` and its files belong to the agent, readable by the instance's group (0750,
    0640): the role writes its logs through the descriptors it inherits, and cannot plant a
    symlink where the agent (root) opens, rotates or reads a log."""
    _own(logs_dir, gid, 0o750)
    for entry in os.scandir(logs_dir):
        if entry.is_symlink():
            os.unlink(entry.path)
        elif entry.is_file(follow_symlinks=False):
            _own(Path(entry.path), gid, 0o640)


def _process_uid(pid: int) -> int | None:
    """The real uid of ``pid`` (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _empty_dir(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _usage_mb(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total // (1024 * 1024)


async def run_probe(probe: ProbeSpec, address: str, port: int, timeout: float) -> tuple[bool, str]:
    """One probe: tcp connect, or HTTP GET of ``path`` answered by 200."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError) as exc:
        return False, f"connect {address}:{port}: {getattr(exc, 'strerror', None) or 'timed out'}"
    try:
        if probe.protocol == "tcp":
            return True, ""
        path = probe.path or "/"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\nConnection: close\r\n"
            "User-Agent: cumulo-probe\r\n\r\n".encode()
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.decode("latin-1").split()
        if len(parts) >= 2 and parts[1] == "200":
            return True, ""
        return False, f"GET {path} answered {' '.join(parts[1:]) or 'nothing'}"
    except (OSError, TimeoutError) as exc:
        return False, f"GET {probe.path}: {getattr(exc, 'strerror', None) or 'timed out'}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _listen(addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening TCP sockets on ``addresses``; an OSError names the address that failed."""
    sockets: list[socket.socket] = []
    try:
        for address, port in addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {address}:{port}: {exc.strerror}"
                ) from None
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def pick_free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


__all__ = ["Guest", "HostContext", "field", "pick_free_port"]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _pem_blocks(pem: str) -> list[str]:
    """The ``-----BEGIN ...-----`` ... ``-----END ...-----`` blocks of a PEM text."""
    blocks: list[str] = []
    current: list[str] = []
    for line in pem.splitlines():
        if line.startswith("-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith("-----END"):
                blocks.append("\n".join(current) + "\n")
                current = []
    return blocks
