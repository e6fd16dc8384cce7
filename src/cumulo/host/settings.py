"""Settings of a host agent, grouped, with units and defaults (and why)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cumulo.host.uidpool import UidRange
from cumulo.state.restart import RestartPolicy


@dataclass(frozen=True)
class HeartbeatSettings:
    interval_s: float = 5.0
    """How often the agent sends ``status_check`` to each SDK connection of an instance."""
    timeout_s: float = 30.0
    """An entry-point connection that leaves a status_check unanswered this long makes the
    instance UnresponsiveRole, and it is recycled (Azure waits minutes; we are on one machine)."""


@dataclass(frozen=True)
class ProbeSettings:
    liveness_factor: float = 2.0
    """A custom probe that has not succeeded for ``liveness_factor * timeoutInSeconds`` seconds
    (after the instance was Ready) makes it UnresponsiveRole and it is recycled. Readiness leaves
    rotation after ``timeoutInSeconds`` without success and comes back at the first success."""
    scale: float = 1.0
    """Multiplies probe intervals and timeouts (tests use a small value)."""


@dataclass(frozen=True)
class LogSettings:
    max_bytes: int = 10 * 1024 * 1024
    """A process log is rotated (copy-truncate) when it grows past this many bytes."""
    keep: int = 3
    """Rotated files kept per log (``entry.log.1`` … ``entry.log.3``)."""
    check_interval_s: float = 1.0
    """How often log sizes are checked."""


@dataclass(frozen=True)
class InstanceUserSettings:
    first_uid: int = UidRange.first
    """The first uid (and gid) of instance users. The default, 1879048192 (0x70000000), is in
    a range systemd marks unused, far from people (1000-60000), dynamic users (61184-65519),
    containers (524288-1879048191) and the usual /etc/subuid ranges (from 100000)."""
    count: int = UidRange.count
    """How many uids the range holds: the most limited instances one machine can run at once
    (over all host agents on it). Uids used by any account, group or /etc/subuid range are
    skipped."""
    prefix: str = UidRange.prefix
    """Instance users are named ``<prefix><uid - first_uid>`` (at most 32 characters)."""
    sweep_dirs: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
    """World-writable directories where a removed instance's files are deleted (at their top
    and in the subdirectories it owns or anyone may write) before its uid is freed."""

    def range(self) -> UidRange:
        return UidRange(self.first_uid, self.count, self.prefix)


@dataclass(frozen=True)
class HostSettings:
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    drain_s: float = 1.0
    """Seconds an instance stays out of rotation (``routable`` false, still running) before
    ``Stopping`` is sent on a graceful stop, so the load balancer sees it leave first."""
    users: InstanceUserSettings = field(default_factory=InstanceUserSettings)
    """The per-instance users of ``limited`` instances when the agent runs as root."""
    hard_quota: bool = True
    """Enforce LocalStorage ``sizeInMB`` with a loop-mounted filesystem per resource (root
    only); otherwise usage is measured and reported (soft quota)."""
    use_cgroups: bool = True
    """Use cgroups for memory and CPU limits where the kernel offers them (else rlimits)."""
    address_base: str | None = None
    """Instance addresses (DIPs) are taken in order from this loopback base. None: derived
    from the host id (``host<N>`` -> 127.<N+1>.0.0, else a hash), so simulated hosts on one
    machine never hand out the same address."""
