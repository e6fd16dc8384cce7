"""The one module that starts processes (and the one that signals and adopts them).

``spawn(ProcessSpec)`` starts a role process:
- in a new session, so its process group id is its pid and the whole group can be signalled;
- inside the instance's cgroups (joined in the child before ``exec``) or under its rlimits;
- as the instance's user (``setgroups``/``setgid``/``setuid`` in the child, root only);
- with stdin from /dev/null and stdout+stderr appended to the process's log file (a file, not a
  pipe: the process keeps running and logging while the host agent restarts), which stays the
  agent's (group: the process's, mode 0640);
- with no parent-death signal: instances must outlive a restart of the host agent (adoption).
  Orphans are prevented instead by killing the process group and sweeping the instance's cgroup
  whenever the instance's main process ends (see ``guest``).

A ``Process`` is watched through a pidfd (``exited`` resolves at once on exit). A process the agent
started itself yields its exit code; an adopted one (started by a previous agent, identified by pid
+ kernel start time recorded on disk) yields None, since only a parent can read an exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from cumulo.host.limits import InstanceLimits


@dataclass(frozen=True)
class ProcessSpec:
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    log_path: str
    uid: int | None = None
    gid: int | None = None
    limits: InstanceLimits | None = None
    umask: int = 0o077
    pass_fds: tuple[int, ...] = ()
    """Open file descriptors the process inherits (listening sockets bound by the agent)."""


def proc_start_ticks(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def alive(pid: int, start_ticks: int | None) -> bool:
    """True when ``pid`` runs and is the same process as recorded (not a reused pid, no zombie)."""
    state = proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return start_ticks is None or proc_start_ticks(pid) == start_ticks


def _preexec(spec: ProcessSpec) -> Callable[[], None]:
    limits = spec.limits
    rlimits = limits.rlimits() if limits is not None else {}

    def run() -> None:  # runs in the child between fork and exec: keep it to syscalls
        if limits is not None and limits.cgroup_dirs:
            limits.join(os.getpid())
        for which, value in rlimits.items():
            resource.setrlimit(which, value)
        if spec.uid is not None and spec.uid != os.geteuid():
            gid = spec.gid if spec.gid is not None else spec.uid
            os.setgroups([])
            os.setgid(gid)
            os.setuid(spec.uid)

    return run


class Process:
    """A process of an instance: spawned by us (``popen`` set) or adopted (``popen`` None)."""

    def __init__(self, pid: int, start_ticks: int | None, popen: subprocess.Popen[bytes] | None):
        self.pid = pid
        self.pgid = pid
        self.start_ticks = start_ticks
        self.popen = popen
        self.returncode: int | None = None
        self.done = False
        self._exited: asyncio.Future[int | None] | None = None
        self._pidfd: int | None = None

    @property
    def adopted(self) -> bool:
        return self.popen is None

    def exited(self) -> asyncio.Future[int | None]:
        """A future resolved with the exit code (negative: signal; None: unknown) at exit.

        Each call returns a new shielded future: cancelling one waiter cancels no other.
        """
        return asyncio.shield(self._watch())

    def _watch(self) -> asyncio.Future[int | None]:
        if self._exited is None:
            loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:
                self._finish()
                return self._exited
            loop.add_reader(self._pidfd, self._on_readable)
            if not (self.popen is not None or alive(self.pid, self.start_ticks)):
                self._on_readable()
        return self._exited

    def _on_readable(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            return
        self._finish()

    def _finish(self) -> None:
        if self.popen is not None:
            self.returncode = self.popen.poll()
        self.done = True
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(self.returncode)

    def is_running(self) -> bool:
        if self.done:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        return alive(self.pid, self.start_ticks)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process's whole group (its session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def signal(self, sig: int) -> None:
        if self.is_running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)


def spawn(spec: ProcessSpec) -> Process:
    """Start one process of an instance (see the module docstring)."""
    # O_NOFOLLOW: the agent (root) never writes through a symlink planted in the place of a log
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    log_fd = os.open(spec.log_path, flags, 0o640)
    try:
        if spec.uid is not None and os.geteuid() == 0:
            # the agent's file, readable by the process's group (it writes via the descriptor)
            os.fchown(log_fd, os.geteuid(), spec.gid if spec.gid is not None else spec.uid)
            os.fchmod(log_fd, 0o640)
        popen = _popen(spec, log_fd)
    finally:
        os.close(log_fd)
    return Process(popen.pid, proc_start_ticks(popen.pid), popen)


def _popen(spec: ProcessSpec, log_fd: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            close_fds=True,
            pass_fds=spec.pass_fds,
            start_new_session=True,
            preexec_fn=_preexec(spec),
            umask=spec.umask,
        )
    except subprocess.SubprocessError as exc:
        # preexec failed in the child (a cgroup gone, setuid refused): an OSError like exec's
        raise OSError(f"cannot set up the process {spec.argv[0]} ({exc})") from None


def adopt(pid: int, start_ticks: int | None) -> Process | None:
    """Take over a process a previous agent started; None if it is gone or the pid was reused."""
    if not alive(pid, start_ticks):
        return None
    process = Process(pid, start_ticks, None)
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        process.pgid = int(data[data.rindex(b")") + 2 :].split()[2])
    return process


def run_command(argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a short administrative command (useradd) and return (exit code, output)."""
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return result.returncode, (result.stdout + result.stderr)
