"""``reconcile(desired, observed, *, now) -> Plan``: the fabric controller's one decision (pure).

Level-triggered (controller-runtime): it looks at the whole desired state and the whole observed
state and says what to do next; the loop applies the plan, observes again and calls it again.
It has no memory of its own.

Rules, in the words the tests use:

- **Freshness** (Diego): a host whose last report is older than ``stale_after`` is *stale*; its
  instances are left alone and still count as present, and while any host is stale nothing new
  is placed (the stale host may still run it). A host silent for ``lost_after`` is *lost*; its
  instances are placed again on other hosts. Nothing is ever stopped on the strength of a stale
  or empty view: stops go only to fresh hosts, about instances those hosts just reported, and
  deployments unknown to the store are stopped only when the store was read in full.
- **Identity**: instance ``i`` of role ``R`` is ``R_IN_i`` in update domain ``i % UD count``;
  indices not wanted are stopped (scale-in); a missing one is started on the host ``placement``
  picks; when one id runs twice, the Ready copy (then the one on the lowest host name) stays.
- **Versions**: an instance whose code digest differs from its role's is recycled; one whose
  settings digest differs gets the settings in place when it has an SDK connection, else it is
  recycled (our extension to Azure, which has no SDK-less roles).
- **Walks** (Azure's upgrade domains): while a walk is in progress, a Ready instance is changed
  only when its update domain is the current one; an instance that is not Ready may be changed in
  any domain the walk has reached. The current domain is done when each of its instances runs the
  new version and is Ready, or when ``instance_timeout`` has passed since the domain began (Azure
  moves on after 30 minutes per instance). Then Auto goes on to the next domain, Manual waits
  (``Before``) for ``walk``, and after the last domain in use the walk finishes. Simultaneous
  treats every domain as current.
- **Routes**: each service's two VIP tables list the Ready instances of the deployment in that slot
  that this plan does not stop or recycle, so instances leave the load balancer first.
"""

from __future__ import annotations

import enum
from collections import defaultdict

from cumulo.controller.placement import Candidate, Placer
from cumulo.controller.plan import (
    Action,
    AdvanceWalk,
    FinishWalk,
    Plan,
    RecycleInstance,
    RecycleReason,
    SetRoutes,
    StartInstance,
    StopInstance,
    StopReason,
    UpdateSettings,
)
from cumulo.controller.records import (
    STOPPED,
    Backend,
    Desired,
    DesiredDeployment,
    DomainState,
    EndpointRoute,
    HostView,
    Observed,
    ObservedInstance,
    ReconcileSettings,
    RoleVersion,
    ServiceRoutes,
    Slot,
    SlotRoutes,
    UpgradeMode,
    instance_id,
    update_domain_of,
)


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    LOST = "lost"


def host_freshness(
    host: HostView, observed: Observed, *, now: float, settings: ReconcileSettings
) -> Freshness:
    """Fresh, stale or lost, from the age of the host's last report."""
    if host.seen_at is None:
        return Freshness.LOST if now - observed.since > settings.lost_after else Freshness.STALE
    age = now - host.seen_at
    if age <= settings.stale_after:
        return Freshness.FRESH
    if age <= settings.lost_after:
        return Freshness.STALE
    return Freshness.LOST


def domains_in_use(deployment: DesiredDeployment) -> int:
    """How many update domains hold at least one wanted instance (at least 1)."""
    used = [
        update_domain_of(i, deployment.update_domain_count)
        for role in deployment.roles
        for i in role.indices
    ]
    return max(used) + 1 if used else 1


def reconcile(
    desired: Desired,
    observed: Observed,
    *,
    now: float,
    settings: ReconcileSettings | None = None,
) -> Plan:
    """The actions that move ``observed`` toward ``desired`` (see the module docstring)."""
    return _Pass(desired, observed, now, settings or ReconcileSettings()).run()


class _Pass:
    """One reconcile pass; a class only to share its indexes between the steps."""

    def __init__(
        self, desired: Desired, observed: Observed, now: float, settings: ReconcileSettings
    ) -> None:
        self.desired = desired
        self.observed = observed
        self.now = now
        self.settings = settings
        self.freshness = {
            h.name: host_freshness(h, observed, now=now, settings=settings) for h in observed.hosts
        }
        self.any_stale = any(f is Freshness.STALE for f in self.freshness.values())
        # Instances that hold their id: on a fresh or stale host, and not StoppedVM.
        self.present: dict[tuple[str, str], list[ObservedInstance]] = defaultdict(list)
        for host in observed.hosts:
            if self.freshness[host.name] is Freshness.LOST:
                continue
            for inst in host.instances:
                if inst.status != STOPPED:
                    self.present[(inst.deployment_id, inst.instance_id)].append(inst)
        self.placer = Placer(
            [
                Candidate(h.name, h.fault_domain)
                for h in observed.hosts
                if h.accepting and self.freshness[h.name] is Freshness.FRESH
            ]
        )
        for copies in self.present.values():
            for inst in copies:
                self.placer.count(inst.deployment_id, inst.role, inst.host, inst.fault_domain)
        self.stops: list[StopInstance] = []
        self.recycles: list[RecycleInstance] = []
        self.updates: list[UpdateSettings] = []
        self.starts: list[StartInstance] = []
        self.walks: list[Action] = []
        self.waiting: list[str] = []
        # (deployment id, instance id) -> the copy that stays, for routes and walk progress.
        self.kept: dict[tuple[str, str], ObservedInstance] = {}
        self.touched: set[tuple[str, str]] = set()
        # Instances whose upgrade waits for their role's dependency environment.
        self.preparing: set[tuple[str, str]] = set()

    def fresh(self, inst: ObservedInstance) -> bool:
        return self.freshness.get(inst.host) is Freshness.FRESH

    def run(self) -> Plan:
        wanted: set[tuple[str, str]] = set()
        for deployment in sorted(self.desired.deployments, key=lambda d: d.id):
            wanted |= self.deployment(deployment)
        self.unwanted(wanted)
        for deployment in sorted(self.desired.deployments, key=lambda d: d.id):
            if deployment.walk is not None:
                self.walk_progress(deployment)
        routes = self.routes()
        actions: list[Action] = [*routes, *self.stops, *self.recycles, *self.updates]
        actions += [*self.starts, *self.walks]
        converging = bool(actions) or self.any_stale or bool(self.waiting)
        converging = converging or any(d.walk is not None for d in self.desired.deployments)
        return Plan(
            actions=tuple(actions),
            requeue_after=self.settings.requeue_after if converging else None,
            waiting=tuple(self.waiting),
        )

    # -- instances ---------------------------------------------------------------------------

    def deployment(self, dep: DesiredDeployment) -> set[tuple[str, str]]:
        wanted: set[tuple[str, str]] = set()
        walk = dep.walk
        for role in sorted(dep.roles, key=lambda r: r.name):
            for index in role.indices:
                iid = instance_id(role.name, index)
                key = (dep.id, iid)
                wanted.add(key)
                ud = update_domain_of(index, dep.update_domain_count)
                copies = self.present.get(key, [])
                if not copies:
                    if dep.running:
                        self.start(dep, role.name, iid, ud, role.version)
                    continue
                keep = self.keep(key, copies)
                if not self.fresh(keep):
                    continue  # a stale host's instance: leave it alone
                if not dep.running:
                    self.stop(keep, StopReason.SUSPENDED)
                    continue
                if keep.version == role.version:
                    continue
                if walk is not None and not (
                    walk.current(ud) or (walk.reached(ud) and not keep.ready)
                ):
                    continue  # the walk has not reached this instance's update domain
                code_changes = keep.version.code != role.version.code
                if code_changes and (dep.id, role.name) in self.desired.unprepared:
                    self.preparing.add(key)
                    continue  # its new dependency environment is not built yet
                self.touched.add(key)
                if code_changes:
                    self.recycles.append(
                        RecycleInstance(dep.id, iid, keep.host, role.version, RecycleReason.UPGRADE)
                    )
                elif keep.sdk_connected:
                    self.updates.append(UpdateSettings(dep.id, iid, keep.host, role.version))
                else:
                    self.recycles.append(
                        RecycleInstance(
                            dep.id, iid, keep.host, role.version, RecycleReason.SETTINGS
                        )
                    )
        return wanted

    def keep(self, key: tuple[str, str], copies: list[ObservedInstance]) -> ObservedInstance:
        """The copy of an instance that stays; the others are stopped (when fresh)."""
        ordered = sorted(copies, key=lambda i: (not i.ready, not self.fresh(i), i.host))
        for extra in ordered[1:]:
            if self.fresh(extra):
                self.stop(extra, StopReason.DUPLICATE)
        self.kept[key] = ordered[0]
        return ordered[0]

    def start(
        self, dep: DesiredDeployment, role: str, iid: str, ud: int, version: RoleVersion
    ) -> None:
        if self.any_stale:
            self.waiting.append(
                f"{iid} of {dep.id} is not placed while a host is stale (it may still run there)."
            )
            return
        host = self.placer.place(dep.id, role)
        if host is None:
            self.waiting.append(f"{iid} of {dep.id} has no host to run on.")
            return
        self.starts.append(
            StartInstance(dep.id, dep.service, role, iid, host.name, ud, host.fault_domain, version)
        )

    def stop(self, inst: ObservedInstance, reason: StopReason) -> None:
        self.touched.add((inst.deployment_id, inst.instance_id))
        self.stops.append(StopInstance(inst.deployment_id, inst.instance_id, inst.host, reason))

    def unwanted(self, wanted: set[tuple[str, str]]) -> None:
        known = {d.id for d in self.desired.deployments}
        for key, copies in sorted(self.present.items()):
            if key in wanted:
                continue
            dep_id, _ = key
            if dep_id not in known and not self.desired.complete:
                continue
            reason = StopReason.SCALE_IN if dep_id in known else StopReason.DEPLOYMENT_REMOVED
            for inst in sorted(copies, key=lambda i: i.host):
                if self.fresh(inst):
                    self.stop(inst, reason)

    # -- walks -------------------------------------------------------------------------------

    def walk_progress(self, dep: DesiredDeployment) -> None:
        walk = dep.walk
        assert walk is not None
        if walk.state is DomainState.BEFORE:
            self.waiting.append(
                f"The {walk.kind.value.lower()} of {dep.id} waits for 'walk' of update domain "
                f"{walk.domain}."
            )
            return
        pending: list[str] = []
        for role in dep.roles:
            for index in role.indices:
                ud = update_domain_of(index, dep.update_domain_count)
                if not walk.current(ud):
                    continue
                key = (dep.id, instance_id(role.name, index))
                inst = self.kept.get(key)
                if (
                    inst is None
                    or key in self.touched
                    or inst.version != role.version
                    or not inst.ready
                ):
                    pending.append(key[1])
        if any((dep.id, iid) in self.preparing for iid in pending):
            roles = sorted({r for d, r in self.desired.unprepared if d == dep.id})
            self.waiting.append(
                f"Update domain {walk.domain} of {dep.id} waits for the dependency environment "
                f"of role {', '.join(roles)} to be built on every host; no instance stops before."
            )
            return
        if pending:
            timed_out = self.now - walk.domain_started_at >= walk.instance_timeout
            acting = any(
                (dep.id, iid) in self.touched or self.is_starting(dep.id, iid) for iid in pending
            )
            if not timed_out or acting:
                return
            self.waiting.append(
                f"Update domain {walk.domain} of {dep.id} timed out waiting for "
                f"{', '.join(sorted(pending))}; the walk moves on."
            )
        last = domains_in_use(dep) - 1
        if walk.mode is UpgradeMode.SIMULTANEOUS or walk.domain >= last:
            self.walks.append(FinishWalk(dep.id, dep.revision))
            return
        state = DomainState.DURING if walk.mode is UpgradeMode.AUTO else DomainState.BEFORE
        self.walks.append(AdvanceWalk(dep.id, dep.revision, walk.domain + 1, state))

    def is_starting(self, dep_id: str, iid: str) -> bool:
        return any(s.deployment_id == dep_id and s.instance_id == iid for s in self.starts)

    # -- routes ------------------------------------------------------------------------------

    def routes(self) -> list[SetRoutes]:
        by_service: dict[str, dict[Slot, DesiredDeployment]] = defaultdict(dict)
        for dep in self.desired.deployments:
            by_service[dep.service][dep.slot] = dep
        current = self.observed.routes
        services = set(by_service)
        if current is not None and self.desired.complete:
            services |= {s for s, r in current.items() if not r.empty}
        out: list[SetRoutes] = []
        for service in sorted(services):
            slots = by_service.get(service, {})
            table = ServiceRoutes(
                service,
                production=self.slot_routes(slots.get(Slot.PRODUCTION)),
                staging=self.slot_routes(slots.get(Slot.STAGING)),
            )
            have = None if current is None else current.get(service, ServiceRoutes(service))
            if have != table:
                out.append(SetRoutes(table))
        return out

    def slot_routes(self, dep: DesiredDeployment | None) -> SlotRoutes | None:
        if dep is None:
            return None
        endpoints: list[EndpointRoute] = []
        for role in sorted(dep.roles, key=lambda r: r.name):
            for endpoint in sorted(role.input_endpoints):
                backends: list[Backend] = []
                for index in role.indices if dep.running else ():
                    key = (dep.id, instance_id(role.name, index))
                    inst = self.kept.get(key)
                    if inst is None or key in self.touched:
                        continue
                    if not inst.ready and not endpoint.routes_unready:
                        continue
                    address = inst.endpoint(endpoint.name)
                    if address is not None:
                        backends.append(Backend(inst.instance_id, address, inst.ready))
                endpoints.append(
                    EndpointRoute(
                        endpoint.name,
                        endpoint.protocol,
                        endpoint.port,
                        tuple(sorted(backends)),
                        endpoint,
                    )
                )
        return SlotRoutes(dep.id, tuple(endpoints))
