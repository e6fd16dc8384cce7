"""The controller's own view of the world: desired deployments and observed hosts.

These are small frozen records, independent of the service model's parse tree, so that the pure
cores (``reconcile``, ``placement``, ``walk``, ``swap``) can be property-tested with generated
inputs. ``controller.desired`` (later) builds them from the model and the store; the host-agent
and load-balancer ports build ``Observed`` from what those processes report.

Vocabulary (DESIGN.md): a *deployment* sits in a *slot* of a *service*; it has *roles*; a role has
*instances* named as Azure names them (``Front_IN_0``); each instance has an *update domain*
(``index % update_domain_count``, Azure's round-robin) and the *fault domain* of its host.

A role's *version* is two digests: ``code`` (package and everything that needs a recycle when it
changes) and ``settings`` (configuration setting values, which an instance with an SDK connection
takes in place). The controller never looks inside them; it only compares.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cumulo.errors import InputError

#: Azure's instance names: ``<Role>_IN_<index>``.
_INSTANCE_RE = re.compile(r"^(?P<role>.+)_IN_(?P<index>0|[1-9][0-9]*)$")

#: Azure's instance status for an instance that serves (DESIGN.md vocabulary).
READY = "ReadyRole"
#: The final status of an instance that no longer runs; it does not hold its instance id.
STOPPED = "StoppedVM"


class Slot(enum.StrEnum):
    """The two deployment slots of a service."""

    PRODUCTION = "production"
    STAGING = "staging"

    @classmethod
    def parse(cls, value: str) -> Slot:
        try:
            return cls(value.lower())
        except ValueError:
            raise InputError(
                f"Slot {value!r} does not exist; use 'production' or 'staging'."
            ) from None


class UpgradeMode(enum.StrEnum):
    """How an upgrade or configuration change walks the update domains (Azure's names)."""

    AUTO = "Auto"
    MANUAL = "Manual"
    SIMULTANEOUS = "Simultaneous"

    @classmethod
    def parse(cls, value: str) -> UpgradeMode:
        for mode in cls:
            if mode.value.lower() == value.lower():
                return mode
        raise InputError(
            f"Upgrade mode {value!r} does not exist; use 'auto', 'manual' or 'simultaneous'."
        )


class DomainState(enum.StrEnum):
    """Azure's ``CurrentUpgradeDomainState``: waiting to start the domain, or working on it."""

    BEFORE = "Before"
    DURING = "During"


class WalkKind(enum.StrEnum):
    """What started a walk (Azure's ``UpgradeType`` plus rollback)."""

    UPGRADE = "Upgrade"
    CONFIG = "Config"
    ROLLBACK = "Rollback"


def instance_id(role: str, index: int) -> str:
    """Azure's name of instance ``index`` of ``role`` (``Front_IN_0``)."""
    return f"{role}_IN_{index}"


def parse_instance_id(value: str) -> tuple[str, int]:
    """``("Front", 0)`` from ``"Front_IN_0"``; a clear error for anything else."""
    match = _INSTANCE_RE.match(value)
    if match is None:
        raise InputError(
            f"Instance name {value!r} is not of the form <Role>_IN_<index> (e.g. 'WebRole_IN_0')."
        )
    return match.group("role"), int(match.group("index"))


def update_domain_of(index: int, update_domain_count: int) -> int:
    """Round-robin update domains per role, as Azure: 10 instances over 5 UDs gives 2 each."""
    return index % update_domain_count


@dataclass(frozen=True, order=True)
class RoleVersion:
    """What an instance of a role runs, as two opaque digests."""

    code: str
    """Package and role configuration that needs a recycle when it changes."""
    settings: str
    """Configuration setting values; applied in place when the instance has an SDK connection."""


@dataclass(frozen=True, order=True)
class ProbeRule:
    """A custom ``LoadBalancerProbe`` of an input endpoint; the load balancer runs it itself."""

    protocol: str
    """``http`` (200 from ``path``) or ``tcp`` (a connect succeeds)."""
    path: str | None = None
    port: int | None = None
    """Port on the instance; None means the endpoint's own port."""
    interval: float = 15.0
    """Seconds between probes (Azure: default 15, at least 5)."""
    timeout: float = 31.0
    """Seconds without a success before the instance leaves rotation (default 31, at least 11)."""


@dataclass(frozen=True, order=True)
class AclRule:
    """One ``AccessControl`` rule bound to an endpoint by an ``EndpointAcl`` of the .cscfg."""

    order: int
    action: str
    """``permit`` or ``deny``."""
    remote_subnet: str
    description: str = ""


@dataclass(frozen=True, order=True)
class InputEndpoint:
    """An input endpoint of a role as the load balancer exposes it on the slot's VIP, with the
    load-balancing policy the .csdef and .cscfg give it."""

    name: str
    protocol: str
    port: int
    distribution: str = "fiveTuple"
    """``fiveTuple`` (Azure's default), ``sourceIP`` or ``sourceIPProtocol``."""
    idle_timeout: float = 240.0
    """Seconds an idle connection stays open (``idleTimeoutInMinutes``, default 4 min)."""
    ignore_status: bool = False
    """``ignoreRoleInstanceStatus``: route to an instance whatever its status."""
    probe: ProbeRule | None = None
    acl: tuple[AclRule, ...] = ()

    @property
    def routes_unready(self) -> bool:
        """Whether instances that are not Ready belong in the LB's table: the LB, not the guest
        agent's status, decides for a custom probe or ``ignoreRoleInstanceStatus``."""
        return self.ignore_status or self.probe is not None


@dataclass(frozen=True)
class DesiredRole:
    """One role of a desired deployment."""

    name: str
    indices: tuple[int, ...]
    """The instance indices wanted (``count`` of them); scale-in removes the highest ones, an
    instance delete removes that index, scale-out fills the lowest free ones."""
    version: RoleVersion
    input_endpoints: tuple[InputEndpoint, ...] = ()
    has_internal_endpoints: bool = False

    @property
    def count(self) -> int:
        return len(self.indices)

    def instance_ids(self) -> list[str]:
        return [instance_id(self.name, i) for i in self.indices]


def resize(indices: tuple[int, ...], count: int) -> tuple[int, ...]:
    """The indices after a change of instance count: drop the highest, add the lowest free."""
    if count < 0:
        raise InputError(f"An instance count cannot be negative ({count}).")
    kept = sorted(set(indices))[:count]
    free = (i for i in range(count + len(indices) + 1) if i not in set(kept))
    while len(kept) < count:
        kept.append(next(free))
    return tuple(sorted(kept))


@dataclass(frozen=True)
class Walk:
    """An upgrade or configuration change in progress (Azure's ``UpgradeStatus``)."""

    kind: WalkKind
    mode: UpgradeMode
    domain: int
    """The current update domain (0-based)."""
    state: DomainState
    domain_started_at: float
    """When the current domain went ``During`` (controller clock: wall seconds, so the time
    survives a controller restart), for the per-instance timeout."""
    previous: Mapping[str, RoleVersion] = field(default_factory=dict)
    """Role name -> the version before this walk (what a rollback returns to)."""
    instance_timeout: float = 1800.0
    """Seconds an upgraded instance may take to become Ready before an Auto walk moves on
    anyway (Azure: 30 minutes per instance)."""
    force: bool = False

    def reached(self, update_domain: int) -> bool:
        """Whether the walk has reached (or passed) ``update_domain``."""
        if self.mode is UpgradeMode.SIMULTANEOUS:
            return self.state is DomainState.DURING
        return update_domain < self.domain or (
            update_domain == self.domain and self.state is DomainState.DURING
        )

    def current(self, update_domain: int) -> bool:
        """Whether ``update_domain`` is the one being worked on right now."""
        if self.mode is UpgradeMode.SIMULTANEOUS:
            return self.state is DomainState.DURING
        return update_domain == self.domain and self.state is DomainState.DURING


@dataclass(frozen=True)
class DesiredDeployment:
    """A deployment as the store says it should be."""

    id: str
    service: str
    slot: Slot
    running: bool
    """``Running`` (instances wanted) or ``Suspended`` (every instance stopped)."""
    update_domain_count: int
    roles: tuple[DesiredRole, ...]
    walk: Walk | None = None
    revision: int = 1

    def role(self, name: str) -> DesiredRole | None:
        for role in self.roles:
            if role.name == name:
                return role
        return None

    def input_endpoints(self) -> frozenset[InputEndpoint]:
        return frozenset(e for r in self.roles for e in r.input_endpoints)


@dataclass(frozen=True)
class Desired:
    """Every desired deployment, and whether that list was read in full."""

    deployments: tuple[DesiredDeployment, ...]
    complete: bool = True
    """False when the store could not be read in full: nothing unknown is then stopped."""
    unprepared: frozenset[tuple[str, str]] = frozenset()
    """(deployment id, role) whose wanted code needs a dependency environment that is not yet
    built on every host: no instance of that role is recycled to it until it is, so a broken
    or slow requirements file never takes an instance down."""


@dataclass(frozen=True)
class InstanceUsage:
    """What an instance uses. ``cpu_percent`` is over the last ``CPU_WINDOW`` or more, as a
    share of its VM size's cores (None until two readings that far apart were seen);
    ``cpu_mark`` is the (controller wall time, cpu_seconds) reading it is measured from."""

    memory_mb: float | None
    cpu_seconds: float | None
    cores: float
    cpu_percent: float | None = None
    cpu_mark: tuple[float, float] | None = None


@dataclass(frozen=True)
class ObservedInstance:
    """One instance as a host agent reports it."""

    deployment_id: str
    instance_id: str
    role: str
    host: str
    status: str
    """Azure's instance status name (``ReadyRole``, ``BusyRole``, ``StoppedVM`` …)."""
    version: RoleVersion
    update_domain: int
    fault_domain: int
    since: float = 0.0
    """When the status last changed, as the host reports it."""
    sdk_connected: bool = False
    """Whether role code holds an SDK connection (then settings apply in place)."""
    endpoints: tuple[tuple[str, str], ...] = ()
    """Endpoint name -> ``address:port`` the instance listens on."""
    detail: str = ""
    """The host's sentence about the status (why it is Busy, what failed)."""
    restarts: int = 0
    """How many times the host restarted it since it was placed there."""
    usage: InstanceUsage | None = None
    """CPU and memory, when the host reports them."""

    @property
    def ready(self) -> bool:
        return self.status == READY

    @property
    def key(self) -> str:
        """``<deployment_id>/<instance_id>``, the host agent's key of an instance."""
        return f"{self.deployment_id}/{self.instance_id}"

    def endpoint(self, name: str) -> str | None:
        for key, address in self.endpoints:
            if key == name:
                return address
        return None


@dataclass(frozen=True)
class HostView:
    """One host: its fault domain, when it last reported, and its instances."""

    name: str
    fault_domain: int
    seen_at: float | None
    """When the host last reported (controller clock; None: not heard from yet)."""
    instances: tuple[ObservedInstance, ...] = ()
    accepting: bool = True
    """False for a host being drained: keeps its instances, takes no new ones."""


@dataclass(frozen=True, order=True)
class Backend:
    instance_id: str
    address: str
    routable: bool = True
    """The default probe: the instance is Ready. Unready backends are listed only for endpoints
    whose custom probe or ``ignoreRoleInstanceStatus`` lets the LB route to them anyway."""


@dataclass(frozen=True, order=True)
class EndpointRoute:
    """One input endpoint of a slot's VIP and the backends new connections may go to."""

    name: str
    protocol: str
    port: int
    backends: tuple[Backend, ...]
    policy: InputEndpoint | None = None
    """Distribution, idle timeout, probe and ACL; None means the LB's defaults."""


@dataclass(frozen=True)
class SlotRoutes:
    deployment_id: str
    endpoints: tuple[EndpointRoute, ...]


@dataclass(frozen=True)
class ServiceRoutes:
    """The route tables of both VIPs of a service; set together so a swap flips atomically."""

    service: str
    production: SlotRoutes | None = None
    staging: SlotRoutes | None = None

    def slot(self, slot: Slot) -> SlotRoutes | None:
        return self.production if slot is Slot.PRODUCTION else self.staging

    @property
    def empty(self) -> bool:
        return self.production is None and self.staging is None


@dataclass(frozen=True)
class Observed:
    """What the controller knows about the hosts and the load balancer right now."""

    hosts: tuple[HostView, ...]
    since: float
    """When this controller began observing (a host not heard from since then counts
    as stale until ``lost_after`` has passed)."""
    routes: Mapping[str, ServiceRoutes] | None = None
    """Service -> routes the load balancer holds; None when the load balancer is unknown."""
    vips: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    """(service, slot) -> input endpoint name -> the address the load balancer listens on."""


@dataclass(frozen=True)
class ReconcileSettings:
    """Timing rules of reconciliation (seconds of the controller's clock, which the loop reads
    as wall time so walk timings survive a restart)."""

    stale_after: float = 10.0
    """A host whose last report is older than this is *stale*: its instances are left alone
    (nothing is stopped or placed again on the strength of an old view)."""
    lost_after: float = 30.0
    """A host silent for this long is *lost*: its instances are placed on other hosts."""
    requeue_after: float = 1.0
    """How soon to look again while something is converging."""
