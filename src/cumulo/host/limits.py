"""Memory and CPU limits of an instance: cgroups where the kernel lets us, else rlimits.

- cgroup v1 (``/sys/fs/cgroup/memory``, ``/cpu``, ``/pids`` writable, agent is root): one group per
  instance, ``cumulo/<instance>``: ``memory.limit_in_bytes`` = the vmsize's memory (the kernel's
  OOM killer ends the instance's processes beyond it, the whole instance counted together),
  ``cpu.cfs_quota_us`` = cores × period. The group also lists every process of the instance, so
  nothing that left the process group escapes the final sweep.
- cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``): the same with ``memory.max`` and ``cpu.max``.
- otherwise: ``RLIMIT_AS`` = the vmsize's memory per process (a virtual-memory bound, stricter than
  resident memory) and no CPU limit (an rlimit cannot express a rate).

Processes join their groups before ``exec`` (see ``spawner``), so not one allocation escapes.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cumulo.log import get_logger
from cumulo.state.spec import LimitsSpec

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
_log = get_logger(component="host.limits")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass(frozen=True)
class InstanceLimits:
    """The limits of one instance and the cgroup directories that hold its processes."""

    memory_bytes: int
    cpu_quota_us: int | None
    cgroup_dirs: tuple[str, ...] = ()
    mode: str = "rlimit"
    """``cgroup-v1``, ``cgroup-v2`` or ``rlimit``: what enforces the limits."""

    def rlimits(self) -> dict[int, tuple[int, int]]:
        if self.mode != "rlimit":
            return {}
        return {resource.RLIMIT_AS: (self.memory_bytes, self.memory_bytes)}

    def join(self, pid: int) -> None:
        """Put ``pid`` in the instance's groups (called in the child before exec)."""
        for d in self.cgroup_dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.cgroup_dirs:
            with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
                found.update(int(x) for x in f.read().split())
        return found

    def kill_all(self) -> int:
        """SIGKILL every process still in the instance's groups; returns how many."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def usage(self) -> dict[str, float]:
        """What the instance uses now: ``memory_mb`` and ``cpu_seconds`` (cgroups only)."""
        out: dict[str, float] = {}
        for d in self.cgroup_dirs:
            path = Path(d)
            with contextlib.suppress(OSError, ValueError):
                if (path / "memory.usage_in_bytes").exists():
                    used = int((path / "memory.usage_in_bytes").read_text())
                    out["memory_mb"] = round(used / (1 << 20), 1)
                elif (path / "memory.current").exists():
                    out["memory_mb"] = round(
                        int((path / "memory.current").read_text()) / (1 << 20), 1
                    )
                if (path / "cpuacct.usage").exists():
                    out["cpu_seconds"] = round(int((path / "cpuacct.usage").read_text()) / 1e9, 3)
                elif (path / "cpu.stat").exists() and self.mode == "cgroup-v2":
                    for line in (path / "cpu.stat").read_text().splitlines():
                        if line.startswith("usage_usec "):
                            out["cpu_seconds"] = round(int(line.split()[1]) / 1e6, 3)
        return out

    def remove(self, wait_s: float = 3.0) -> None:
        """Kill what is left and remove the groups (blocking: a group with exiting processes
        cannot be removed yet, so this retries for up to ``wait_s`` seconds)."""
        deadline = time.monotonic() + wait_s
        while True:
            self.kill_all()
            left = []
            for d in self.cgroup_dirs:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(d)
            if not left or time.monotonic() > deadline:
                return
            time.sleep(0.05)


def sweep(prefix: str, keep: set[str]) -> list[str]:
    """Remove this host's groups named ``<prefix>*`` that no current instance uses (left by an
    agent that crashed while removing an instance); returns the names removed."""
    removed: list[str] = []
    for controller in ("memory", "cpu", "cpuacct", "pids"):
        base = CGROUP_ROOT / controller / "cumulo"
        if not base.is_dir():
            continue
        for group in base.iterdir():
            if group.is_dir() and group.name.startswith(prefix) and group.name not in keep:
                InstanceLimits(0, None, (str(group),), "cgroup-v1").remove(wait_s=1.0)
                if not group.exists():
                    removed.append(group.name)
    return sorted(set(removed))


def _v1_available() -> bool:
    return os.geteuid() == 0 and os.access(CGROUP_ROOT / "memory", os.W_OK)


def _v2_available() -> bool:
    return os.geteuid() == 0 and (CGROUP_ROOT / "cgroup.controllers").exists()


def create(instance: str, spec: LimitsSpec, *, use_cgroups: bool = True) -> InstanceLimits:
    """Create (or reuse) the instance's groups and write its limits."""
    memory = max(16, spec.memory_mb) * 1024 * 1024
    quota = max(1000, int(spec.cores * PERIOD_US))
    name = _safe(instance)
    if use_cgroups and _v2_available():
        d = CGROUP_ROOT / "cumulo" / name
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / "memory.max").write_text(str(memory))
            with contextlib.suppress(OSError):
                (d / "memory.swap.max").write_text("0")
            with contextlib.suppress(OSError):
                (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            return InstanceLimits(memory, quota, (str(d),), "cgroup-v2")
        except OSError as exc:
            _log.warning("limits.cgroup_failed", instance=instance, error=str(exc))
    if use_cgroups and _v1_available():
        dirs: list[str] = []
        try:
            mem = CGROUP_ROOT / "memory" / "cumulo" / name
            mem.mkdir(parents=True, exist_ok=True)
            # memsw must stay >= memory: raise it first when growing, set it last when shrinking.
            with contextlib.suppress(OSError):
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory))
            (mem / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(OSError):
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory))
            dirs.append(str(mem))
            cpu = CGROUP_ROOT / "cpu" / "cumulo" / name
            with contextlib.suppress(OSError):
                cpu.mkdir(parents=True, exist_ok=True)
                (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(quota))
                dirs.append(str(cpu))
            acct = CGROUP_ROOT / "cpuacct" / "cumulo" / name
            if (CGROUP_ROOT / "cpuacct").resolve() != (CGROUP_ROOT / "cpu").resolve():
                with contextlib.suppress(OSError):
                    acct.mkdir(parents=True, exist_ok=True)
                    dirs.append(str(acct))
            return InstanceLimits(memory, quota, tuple(dirs), "cgroup-v1")
        except OSError as exc:
            _log.warning("limits.cgroup_failed", instance=instance, error=str(exc))
            for made in reversed(dirs):
                with contextlib.suppress(OSError):
                    os.rmdir(made)
    return InstanceLimits(memory, None, (), "rlimit")
