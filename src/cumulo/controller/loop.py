"""The reconcile loop: observe, ``reconcile``, apply, finish operations; level-triggered.

Each tick:

1. **Desired** — every deployment from the store (``complete=False`` if the store could not be
   read: then nothing unknown is stopped).
2. **Observe** — every host agent (``GET /v1/instances``) at once. A host that does not answer
   keeps its last view and its ``seen_at``, so it turns *stale* and then *lost* by age
   (``ReconcileSettings``). Host agents report no version: the loop keeps a **ledger** of the spec
   version it last gave each instance (``<deployment>/<instance>`` key). After a controller
   restart the ledger is empty and an instance is assumed to run the version its update domain
   should run; the host corrects that at the next ``PUT`` (it compares the real specs), so a
   restart of the controller restarts no instance.
3. **Reconcile** — the pure ``reconcile`` gives a Plan.
4. **Apply** — routes first (one ``PUT /v1/routes`` per service, so a swap flips atomically and an
   instance leaves the load balancer before it stops), then instance actions grouped per host and
   deployment as one scoped, idempotent ``PUT /v1/instances`` each. Before a group that stops or
   recycles anything the loop **re-reads** the deployment's revision and that host's instances
   and skips the group if either moved. Walk steps are written with the revision as guard.
   An instance the host starts or recycles is *pending* — shown as ``BusyRole`` to ``reconcile``
   — until the host reports it Ready after a state change, so a walk never counts a recycle that
   has not happened yet.
5. **Operations** — each one in progress is finished when ``operations.outcome`` says so;
   reboot/reimage/rebuild are sent to the instance's host and end when it is Ready again.

Errors back off (0.5 s doubling to 10 s); a change through the API wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.controller import desired as desired_mod
from cumulo.controller import walk as walks
from cumulo.controller.management import Management, load_model
from cumulo.controller.operations import INSTANCE_KINDS, outcome
from cumulo.controller.plan import (
    AdvanceWalk,
    FinishWalk,
    Plan,
    RecycleInstance,
    SetRoutes,
    StartInstance,
    StopInstance,
    UpdateSettings,
    describe,
)
from cumulo.controller.ports import (
    UNKNOWN_VERSION,
    HostAgentPort,
    LoadBalancerPort,
    host_view,
    route_table_json,
)
from cumulo.controller.reconcile import reconcile
from cumulo.controller.records import (
    STOPPED,
    Desired,
    DesiredDeployment,
    HostView,
    Observed,
    ObservedInstance,
    ReconcileSettings,
    RoleVersion,
    ServiceRoutes,
    parse_instance_id,
    update_domain_of,
)
from cumulo.controller.specs import extract_package, instance_spec, prune_packages
from cumulo.errors import CumuloError, InputError, NotFoundError, TemporaryError
from cumulo.log import get_logger
from cumulo.model.service import Service
from cumulo.storage.store.records import DeploymentRecord, OperationRecord, OperationStatus

LbFactory = Callable[[str], Awaitable[LoadBalancerPort | None]]


async def _no_lb(service: str) -> LoadBalancerPort | None:
    return None


@dataclass(frozen=True)
class LoopSettings:
    """Timing of the reconcile loop (seconds)."""

    idle_interval: float = 2.0
    """How often to look when nothing is converging."""
    backoff_base: float = 0.5
    """First delay after an error; doubles per consecutive error."""
    backoff_cap: float = 10.0
    operation_timeout: float = 3600.0
    """An operation still in progress after this long fails with ``OperationTimedOut``."""
    failing_after: float = 120.0
    """An operation whose instances still crash-loop after this long fails with
    ``InstancesFailing`` (so a broken deployment does not stay locked)."""
    pending_timeout: float = 120.0
    """A started or recycled instance counts as done after this long even if the host never
    showed a state change (a recycle faster than one observation)."""
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)


def _key(deployment_id: str, instance_id: str) -> str:
    return f"{deployment_id}/{instance_id}"


class Controller:
    """The fabric controller's loop (one per controller process)."""

    def __init__(
        self,
        management: Management,
        hosts: Sequence[HostAgentPort],
        *,
        data_dir: Path,
        lb_for: LbFactory = _no_lb,
        clock: Clock | None = None,
        settings: LoopSettings | None = None,
        emulated: bool = False,
    ) -> None:
        self.m = management
        self.store = management.store
        self.hosts = {h.name: h for h in hosts}
        self.data_dir = Path(data_dir)
        self.lb_for = lb_for
        self.clock = clock or SystemClock()
        self.settings = settings or LoopSettings()
        self.emulated = emulated
        self.started = self.clock.wall()
        self._ledger_loaded = False
        self._last = Observed((), since=self.started)
        self.views: dict[str, HostView] = {
            h.name: HostView(h.name, h.fault_domain, None) for h in hosts
        }
        self.ledger: dict[str, RoleVersion] = {}
        self.resynced: set[str] = set()
        """Hosts given their instances' specs once since this controller started."""
        self.raw: dict[str, dict[str, dict[str, Any]]] = {}
        """host -> instance key -> the host's observed record (as reported)."""
        self.pending: dict[str, tuple[float | None, float]] = {}
        """key -> (the instance's ``since`` when the change was asked, when it was asked)."""
        self.prepared: set[tuple[str, str, str]] = set()
        """(deployment, role, code) whose dependency environment every host has built."""
        self.roleenv_failures: dict[tuple[str, str], str] = {}
        """(deployment, role) -> the last build failure put into its event history."""
        self._packages_kept: set[str] | None = None
        """The package digests the last prune kept (None: not pruned yet)."""
        self.lb_applied: dict[str, ServiceRoutes] = {}
        self.lb_version: dict[str, int] = {}
        self.vips: dict[tuple[str, str], dict[str, str]] = {}
        self.instance_ops: dict[str, str] = {}
        """operation id -> instance key, for reboot/reimage/rebuild in flight."""
        self._models: dict[tuple[str, str], Service] = {}
        self.host_events: dict[str, tuple[int, int]] = {}
        """host -> (its process generation, the last event seq taken into the store)."""
        self.topology: dict[str, Any] = {}
        """deployment id -> the topology last pushed to its hosts."""
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.errors = 0
        self.last_plan = Plan()
        self.log = get_logger(component="controller")

    # -- public --------------------------------------------------------------------------------

    def snapshot(self) -> Observed:
        """The latest observation. The API reads it from other threads, so it is an immutable
        value rebuilt by the loop (``_refresh``), never a view of the loop's own dicts."""
        return self._last

    def _refresh(self) -> Observed:
        self._last = Observed(
            hosts=tuple(self.views.values()),
            since=self.started,
            routes=dict(self.lb_applied),
            vips={k: dict(v) for k, v in self.vips.items()},
        )
        return self._last

    def wake(self) -> None:
        """Look again now (callable from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def instance_logs(
        self, service: str, slot: str, instance: str, name: str, tail: int = 200
    ) -> str:
        """The last ``tail`` lines of one log (``entry``, ``site``, ``task<N>``) of an instance,
        from the host that runs it."""
        record = self.store.get_deployment(service, slot)
        for view in self.views.values():
            for inst in view.instances:
                if inst.deployment_id == record.id and inst.instance_id == instance:
                    return await self.hosts[view.name].logs(record.id, instance, name, tail)
        raise NotFoundError(
            f"No host reports instance {instance} of the {slot} deployment of {service}."
        )

    async def instance_exec(
        self, service: str, slot: str, instance: str, argv: list[str], timeout: float
    ) -> dict[str, Any]:
        """Run a command in an instance's context on the host that runs it (``cumulo instance
        exec``): ``{"exit_code", "output", "timed_out", "host"}``."""
        record = self.store.get_deployment(service, slot)
        for view in self.views.values():
            for inst in view.instances:
                if inst.deployment_id == record.id and inst.instance_id == instance:
                    result = await self.hosts[view.name].exec(record.id, instance, argv, timeout)
                    return {**result, "host": view.name}
        raise NotFoundError(
            f"No host reports instance {instance} of the {slot} deployment of {service}."
        )

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            delay = await self.tick()
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            _, rest = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            for task in waiters:
                task.cancel()
            for task in rest:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def tick(self) -> float:
        """One pass; returns how long to wait before the next."""
        failed = False
        records, desired = self._desired()
        if not self._ledger_loaded:
            self._load_ledger()
            self._ledger_loaded = True
        await self._observe()
        await self._ingest_host_events(records)
        now = self.clock.wall()
        observed = self._observed_for_reconcile(desired, now)
        try:
            await self._resync(records, desired)
        except CumuloError as exc:
            failed = True
            self.log.warning("resync.failed", error=exc.message)
        desired = replace(desired, unprepared=await self._prepare_environments(records, desired))
        plan = reconcile(desired, observed, now=now, settings=self.settings.reconcile)
        self.last_plan = plan
        if plan.actions:
            self.log.info("plan", actions=plan.describe(), waiting=list(plan.waiting))
        try:
            await self._apply(plan, records, desired)
        except CumuloError as exc:
            failed = True
            self.log.warning("apply.failed", error=exc.message)
        try:
            await self._push_topologies(desired)
        except CumuloError as exc:
            self.log.warning("topology.failed", error=exc.message)
        try:
            records, _ = self._desired()
            await self._operations(records, plan, now)
        except CumuloError as exc:
            failed = True
            self.log.warning("operations.failed", error=exc.message)
        await self._prune_packages()
        if failed or any(v.seen_at is None for v in self.views.values()):
            self.errors += 1
            delay: float = self.settings.backoff_base * 2.0 ** (self.errors - 1)
            return min(self.settings.backoff_cap, delay)
        self.errors = 0
        return plan.requeue_after or self.settings.idle_interval

    async def _prune_packages(self) -> None:
        """Drop extracted packages no deployment takes a role version from any more (after an
        upgrade's walk, a rollback's end or a delete); once per change of that set, and never
        when the store cannot be read."""
        try:
            records = self.store.list_deployments()
        except CumuloError:
            return
        keep = {r.package_digest for r in records} | {
            str(source["package"]) for r in records for source in r.document.get("sources") or []
        }
        if keep == self._packages_kept:
            return
        removed = await asyncio.to_thread(prune_packages, self.data_dir, keep)
        self._packages_kept = keep
        if removed:
            self.log.info("packages.pruned", extracted=removed)

    # -- role dependency environments --------------------------------------------------------

    async def _prepare_environments(
        self, records: dict[str, DeploymentRecord], desired: Desired
    ) -> frozenset[tuple[str, str]]:
        """The (deployment, role) pairs whose new code's dependency environment is not built on
        every fresh host yet. For each role an update walk is moving to new code, every host is
        asked to build it (``POST /v1/prepare``) before any instance stops; until all answer
        ready, reconcile recycles none of the role's instances. A failed build is an event in
        the deployment's history (with pip's or npm's last lines) and is tried again."""
        unprepared: set[tuple[str, str]] = set()
        running = {
            (i.deployment_id, i.role, i.version.code)
            for view in self.views.values()
            for i in view.instances
        }
        for dep in desired.deployments:
            record = records.get(dep.id)
            if dep.walk is None or record is None:
                continue
            for role in dep.roles:
                key = (dep.id, role.name, role.version.code)
                old_code = any(
                    d == dep.id and r == role.name and c != role.version.code for d, r, c in running
                )
                if key in self.prepared or not old_code:
                    continue
                if not await self._prepared_everywhere(record, role.name, role.version):
                    unprepared.add((dep.id, role.name))
                else:
                    self.prepared.add(key)
        return frozenset(unprepared)

    async def _prepared_everywhere(
        self, record: DeploymentRecord, role: str, version: RoleVersion
    ) -> bool:
        ready = True
        for name, host in sorted(self.hosts.items()):
            view = self.views.get(name)
            if view is None or view.seen_at is None:
                continue  # a host that is away builds at its instances' start, as usual
            try:
                spec = self._spec(record, role, f"{role}_IN_0", version, 0, host.fault_domain)
                answers = await host.prepare([spec])
            except CumuloError as exc:
                self.log.warning("roleenv.unknown", host=name, role=role, error=exc.message)
                return False
            for answer in answers:
                state = str(answer.get("state"))
                if state == "ready":
                    continue
                ready = False
                detail = str(answer.get("detail") or "")
                if state == "failed" and self.roleenv_failures.get((record.id, role)) != detail:
                    self.roleenv_failures[(record.id, role)] = detail
                    self._event(
                        record.service,
                        "roleenv.failed",
                        slot=record.slot,
                        deployment_id=record.id,
                        fields={"role": role, "host": name, "detail": detail},
                    )
        return ready

    # -- host events and topology ----------------------------------------------------------

    async def _ingest_host_events(self, records: dict[str, DeploymentRecord]) -> None:
        """Copy the hosts' instance events into the services' event history."""
        for name, host in self.hosts.items():
            generation = getattr(host, "generation", 0)
            seen_generation, since = self.host_events.get(name, (generation, 0))
            if seen_generation != generation:
                since = 0
            try:
                events = await host.events(since)
            except CumuloError:
                continue
            for event in events:
                since = max(since, int(event.get("seq", 0)))
                dep_id, _, instance = str(event.get("key", "")).partition("/")
                record = records.get(dep_id)
                if record is None:
                    continue
                fields = {
                    k: v for k, v in event.items() if k not in ("seq", "time", "event", "key")
                }
                fields.update(instance=instance, host=name)
                with contextlib.suppress(CumuloError):
                    self.store.append_event(
                        record.service,
                        str(event.get("event", "instance.event")),
                        slot=record.slot,
                        deployment_id=dep_id,
                        fields=fields,
                    )
            self.host_events[name] = (generation, since)

    def _topology_of(self, dep: DesiredDeployment) -> dict[str, Any]:
        roles: dict[str, list[dict[str, Any]]] = {r.name: [] for r in dep.roles}
        for view in self.views.values():
            for inst in view.instances:
                if inst.deployment_id != dep.id or inst.status == STOPPED:
                    continue
                if inst.role not in roles:
                    continue
                endpoints = {
                    e["name"]: {
                        "protocol": e.get("protocol"),
                        "address": e.get("address"),
                        "port": e.get("local_port"),
                    }
                    for e in self.raw.get(view.name, {}).get(inst.key, {}).get("endpoints", [])
                    if e.get("kind") == "internal"
                }
                roles[inst.role].append(
                    {
                        "id": inst.instance_id,
                        "role": inst.role,
                        "update_domain": inst.update_domain,
                        "fault_domain": inst.fault_domain,
                        "endpoints": endpoints,
                    }
                )
        for items in roles.values():
            items.sort(key=lambda i: str(i["id"]))
        return roles

    async def _push_topologies(self, desired: Desired) -> None:
        """Tell every instance of a deployment whose roles have internal endpoints about the
        deployment's instances, whenever that set changes (Azure's topology change)."""
        for dep in desired.deployments:
            if not any(r.has_internal_endpoints for r in dep.roles):
                continue
            topology = self._topology_of(dep)
            if self.topology.get(dep.id) == topology:
                continue
            hosts = {
                v.name
                for v in self.views.values()
                for i in v.instances
                if i.deployment_id == dep.id
            }
            for name in sorted(hosts):
                await self.hosts[name].push_topology(dep.id, topology)
            self.topology[dep.id] = topology

    # -- desired -------------------------------------------------------------------------------

    def _desired(self) -> tuple[dict[str, DeploymentRecord], Desired]:
        try:
            records = {r.id: r for r in self.store.list_deployments()}
        except CumuloError as exc:
            self.log.warning("store.unreadable", error=exc.message)
            return {}, Desired((), complete=False)
        deps = []
        complete = True
        for record in records.values():
            try:
                deps.append(self.m.desired_of(record))
            except InputError as exc:
                complete = False
                self.log.error("deployment.unreadable", deployment=record.id, error=exc.message)
        return records, Desired(tuple(deps), complete=complete)

    # -- observe -------------------------------------------------------------------------------

    async def _observe_host(self, host: HostAgentPort) -> None:
        try:
            instances = await host.observe()
        except CumuloError as exc:
            self.log.warning("host.unreachable", host=host.name, error=exc.message)
            return
        self.raw[host.name] = {
            str(i.get("key") or f"{i.get('deployment_id')}/{i.get('instance_id')}"): i
            for i in instances
        }
        view = host_view(
            host.name,
            host.fault_domain,
            instances,
            seen_at=self.clock.wall(),
            versions=self.ledger,
            previous=self.views.get(host.name),
        )
        self.views[host.name] = view

    async def _observe(self) -> None:
        await asyncio.gather(*(self._observe_host(h) for h in self.hosts.values()))

    def _assumed(self, dep: DesiredDeployment, inst: ObservedInstance) -> RoleVersion:
        """The version an instance with no ledger entry is taken to run (see the docstring)."""
        role = dep.role(inst.role)
        if role is None:
            return UNKNOWN_VERSION
        walk = dep.walk
        try:
            _, index = parse_instance_id(inst.instance_id)
        except InputError:
            return UNKNOWN_VERSION
        ud = update_domain_of(index, dep.update_domain_count)
        if walk is None or walk.reached(ud):
            return role.version
        return walk.previous.get(role.name, role.version)

    def _observed_for_reconcile(self, desired: Desired, now: float) -> Observed:
        deps = {d.id: d for d in desired.deployments}
        hosts = []
        for view in self.views.values():
            instances = []
            for inst in view.instances:
                key = _key(inst.deployment_id, inst.instance_id)
                if inst.version == UNKNOWN_VERSION and inst.deployment_id in deps:
                    assumed = self._assumed(deps[inst.deployment_id], inst)
                    if assumed != UNKNOWN_VERSION:
                        self.ledger[key] = assumed
                        inst = replace(inst, version=assumed)
                if key in self.pending:
                    since_then, asked_at = self.pending[key]
                    moved = since_then is None or inst.since != since_then
                    if inst.ready and (moved or now - asked_at > self.settings.pending_timeout):
                        del self.pending[key]
                    elif inst.ready:
                        inst = replace(inst, status="BusyRole")
                instances.append(inst)
            hosts.append(replace(view, instances=tuple(instances)))
        self.views = {h.name: h for h in hosts}
        return self._refresh()

    # -- apply ---------------------------------------------------------------------------------

    async def _apply(
        self, plan: Plan, records: dict[str, DeploymentRecord], desired: Desired
    ) -> None:
        for routes in plan.of_type(SetRoutes):
            await self._set_routes(routes.routes)
        groups: dict[tuple[str, str], list[Any]] = {}
        for action in plan.actions:
            if isinstance(action, StartInstance | StopInstance | RecycleInstance | UpdateSettings):
                groups.setdefault((action.host, action.deployment_id), []).append(action)
        deps = {d.id: d for d in desired.deployments}
        errors: list[str] = []
        for (host, dep_id), actions in sorted(groups.items()):
            try:
                await self._apply_group(
                    host, dep_id, actions, records.get(dep_id), deps.get(dep_id)
                )
            except CumuloError as exc:
                errors.append(f"{host}/{dep_id}: {exc.message}")
        for step in plan.actions:
            if isinstance(step, AdvanceWalk | FinishWalk):
                self._walk_step(step, records)
        if errors:
            raise _ApplyError("; ".join(errors))

    async def _set_routes(self, routes: ServiceRoutes) -> None:
        lb = await self.lb_for(routes.service)
        if lb is None:
            self.lb_applied[routes.service] = routes
            self._refresh()
            return
        version = max(self.lb_version.get(routes.service, 0) + 1, int(self.clock.wall() * 1000))
        answer = await lb.put_routes(route_table_json(routes, version=version))
        self.lb_version[routes.service] = version
        self.lb_applied[routes.service] = routes
        for listener in answer.get("listeners", []) if isinstance(answer, dict) else []:
            slot, name = listener.get("slot"), listener.get("endpoint")
            address = listener.get("address")
            port = listener.get("port") or listener.get("publicPort")
            if slot and name and address and port:
                self.vips.setdefault((routes.service, slot), {})[name] = f"{address}:{port}"
        self._refresh()
        self._event(routes.service, "routes.set", fields={"version": version})

    def _model(self, package: str, configuration: str) -> Service:
        key = (package, hashlib.sha256(configuration.encode()).hexdigest())
        if key not in self._models:
            self._models[key] = load_model(self.store.get_package(package), configuration)
        return self._models[key]

    def _spec(
        self,
        record: DeploymentRecord,
        role: str,
        instance_id: str,
        version: RoleVersion,
        update_domain: int,
        fault_domain: int,
    ) -> dict[str, Any]:
        source = desired_mod.source_for(dict(record.document), role, version)
        if source is None:
            raise _ApplyError(
                f"No package and configuration are recorded for version {version.code[:8]} of "
                f"role {role} in deployment {record.id}."
            )
        package, configuration = source
        model = self._model(package, configuration)
        root = extract_package(self.data_dir, package, self.store.get_package(package))
        spec = instance_spec(
            model,
            deployment_id=record.id,
            service_name=record.service,
            # The slot the deployment was created in: a swap changes no instance spec, so it
            # recycles nothing (role code does not see its slot; Azure's does not either).
            slot=str(record.document.get("spec_slot", record.slot)),
            role_name=role,
            instance_id=instance_id,
            update_domain=update_domain,
            fault_domain=fault_domain,
            approot_root=root,
            emulated=self.emulated,
            certificates={
                c.thumbprint: c.pem for c in self.store.list_certificates(record.service)
            },
        )
        return spec.to_json()

    async def _apply_group(
        self,
        host_name: str,
        dep_id: str,
        actions: list[Any],
        record: DeploymentRecord | None,
        dep: DesiredDeployment | None,
    ) -> None:
        host = self.hosts[host_name]
        destructive = any(a.destructive for a in actions)
        if destructive:
            # Fresh state before anything is stopped: the deployment has not moved, and the
            # host still runs what the plan was made from.
            if record is not None:
                try:
                    current = self.store.get_deployment_by_id(dep_id)
                except NotFoundError:
                    current = None
                if current is None or current.revision != record.revision:
                    self.log.info("apply.skipped", host=host_name, deployment=dep_id, why="moved")
                    return
            before = {i.instance_id for i in self.views[host_name].instances}
            await self._observe_host(host)
            after = {
                i.instance_id
                for i in self.views[host_name].instances
                if i.deployment_id == dep_id and i.status != STOPPED
            }
            targets = {a.instance_id for a in actions if a.destructive}
            if not targets <= after or not targets <= before:
                self.log.info("apply.skipped", host=host_name, deployment=dep_id, why="changed")
                return
        # The deployment's instances on this host after the plan: id -> (role, version, UD).
        view = self.views[host_name]
        wanted: dict[str, tuple[str, RoleVersion, int]] = {}
        since: dict[str, float] = {}
        for inst in view.instances:
            if inst.deployment_id == dep_id and inst.status != STOPPED:
                version = self.ledger.get(_key(dep_id, inst.instance_id), inst.version)
                wanted[inst.instance_id] = (inst.role, version, inst.update_domain)
                since[inst.instance_id] = inst.since
        for a in actions:
            if isinstance(a, StopInstance):
                wanted.pop(a.instance_id, None)
            elif isinstance(a, RecycleInstance | UpdateSettings):
                role, _, ud = wanted[a.instance_id]
                wanted[a.instance_id] = (role, a.version, ud)
            elif isinstance(a, StartInstance):
                wanted[a.instance_id] = (a.role, a.version, a.update_domain)
        stopped = [a.instance_id for a in actions if isinstance(a, StopInstance)]
        result = await self._put(host, dep_id, record if dep is not None else None, wanted, stopped)
        now = self.clock.wall()
        for key in [*result.get("started", []), *result.get("recycled", [])]:
            iid = key.split("/", 1)[-1]
            self.pending[key] = (since.get(iid), now)
        changed = set(result.get("changed", []))
        for a in actions:
            key = _key(dep_id, a.instance_id)
            if isinstance(a, RecycleInstance) and key in changed:
                # The host took the change in place (only setting values differ), but this
                # instance must restart to read them: it has no SDK connection to hear about
                # them, or they reach it as environment variables, which are read at start.
                await host.instance_action(dep_id, a.instance_id, "reboot")
                self.pending[key] = (since.get(a.instance_id), now)
        service = record.service if record is not None else (dep.service if dep else "")
        for a in actions:
            self._event(
                service,
                "instance." + type(a).__name__.removesuffix("Instance").lower(),
                slot=record.slot if record else None,
                deployment_id=dep_id,
                fields={"instance": a.instance_id, "host": host_name, "what": describe(a)},
            )

    async def _put(
        self,
        host: HostAgentPort,
        dep_id: str,
        record: DeploymentRecord | None,
        wanted: dict[str, tuple[str, RoleVersion, int]],
        stopped: list[str],
    ) -> dict[str, list[str]]:
        """One scoped ``PUT`` of a deployment's instances on a host. The versions are written
        to the store first (the intent), so a controller killed mid-way re-sends the same set
        after its restart (``_resync``); a failed PUT puts the previous versions back."""
        specs = []
        if record is not None:
            for iid, (role, version, ud) in sorted(wanted.items()):
                specs.append(self._spec(record, role, iid, version, ud, host.fault_domain))
        changes: dict[str, RoleVersion | None] = {
            _key(dep_id, iid): version for iid, (_, version, _) in wanted.items()
        }
        changes.update({_key(dep_id, iid): None for iid in stopped})
        before = {key: self.ledger.get(key) for key in changes}
        self._remember(changes)
        try:
            result = await host.apply(specs, deployment_id=dep_id)
        except CumuloError:
            self._remember(before)
            raise
        for iid in stopped:
            self.pending.pop(_key(dep_id, iid), None)
        return result

    def _remember(self, versions: dict[str, RoleVersion | None]) -> None:
        """Keep instance versions in memory and in the store (``ledger/<key>`` = code.settings)."""
        items: dict[str, str | None] = {}
        for key, version in versions.items():
            if version is None:
                self.ledger.pop(key, None)
                items[f"ledger/{key}"] = None
            else:
                self.ledger[key] = version
                items[f"ledger/{key}"] = f"{version.code}.{version.settings}"
        self.store.set_controller_state(items)

    def _load_ledger(self) -> None:
        for name, value in self.store.get_controller_state("ledger/").items():
            code, _, settings = value.partition(".")
            self.ledger[name.removeprefix("ledger/")] = RoleVersion(code, settings)

    async def _resync(self, records: dict[str, DeploymentRecord], desired: Desired) -> None:
        """After a (re)start: give each fresh host, per deployment, the specs of the instances
        it already runs, at the versions the ledger says they were given. Hosts answer
        ``unchanged`` for all of them unless a previous controller died between writing its
        intent and sending it; then the host completes that intent."""
        deps = {d.id: d for d in desired.deployments}
        for name, view in self.views.items():
            if name in self.resynced or view.seen_at is None:
                continue
            groups: dict[str, dict[str, tuple[str, RoleVersion, int]]] = {}
            for inst in view.instances:
                if inst.deployment_id in deps and inst.status != STOPPED:
                    version = self.ledger.get(inst.key, inst.version)
                    if version == UNKNOWN_VERSION:
                        continue
                    groups.setdefault(inst.deployment_id, {})[inst.instance_id] = (
                        inst.role,
                        version,
                        inst.update_domain,
                    )
            for dep_id, wanted in sorted(groups.items()):
                result = await self._put(self.hosts[name], dep_id, records[dep_id], wanted, [])
                since = {i.key: i.since for i in view.instances}
                for key in [*result.get("started", []), *result.get("recycled", [])]:
                    self.pending[key] = (since.get(key), self.clock.wall())
                if result.get("recycled") or result.get("started"):
                    self.log.warning(
                        "resync.completed_intent", host=name, deployment=dep_id, result=result
                    )
            self.resynced.add(name)

    def _walk_step(
        self, action: AdvanceWalk | FinishWalk, records: dict[str, DeploymentRecord]
    ) -> None:
        try:
            record = self.store.get_deployment_by_id(action.deployment_id)
        except NotFoundError:
            return
        if record.revision != action.revision:
            return  # it moved since the plan; the next tick decides again
        dep = self.m.desired_of(record)
        now = self.clock.wall()
        if isinstance(action, AdvanceWalk):
            new = walks.advance(dep, action.domain, action.state, now=now)
            name, fields = "walk.domain", {"domain": action.domain, "state": action.state.value}
        else:
            new = walks.finish(dep)
            name, fields = "walk.done", {}
        try:
            self.m.write(record, new)
        except CumuloError as exc:
            self.log.info("walk.skipped", deployment=record.id, error=exc.message)
            return
        self._event(record.service, name, slot=record.slot, deployment_id=record.id, fields=fields)

    # -- operations ----------------------------------------------------------------------------

    async def _operations(
        self, records: dict[str, DeploymentRecord], plan: Plan, now: float
    ) -> None:
        observed = self._refresh()
        for op in self.store.list_operations(status=OperationStatus.IN_PROGRESS):
            if op.kind in INSTANCE_KINDS:
                await self._instance_operation(op, now)
                continue
            dep = None
            if op.deployment_id is not None and op.deployment_id in records:
                dep = self.m.desired_of(records[op.deployment_id])
            result = outcome(
                op,
                dep,
                plan,
                observed,
                now=now,
                timeout=self.settings.operation_timeout,
                failing_after=self.settings.failing_after,
            )
            if result is not None:
                self._finish(
                    op, result.status, result.http_status, result.error_code, result.error_message
                )

    def _finish(
        self,
        op: OperationRecord,
        status: OperationStatus,
        http_status: int = 200,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        with contextlib.suppress(CumuloError):
            self.store.finish_operation(
                op.id, status, http_status=http_status, error_code=code, error_message=message
            )
            self._event(
                op.service,
                "operation." + status.value.lower(),
                slot=op.slot,
                deployment_id=op.deployment_id,
                fields={"operation": op.id, "kind": op.kind, "error": code},
            )

    async def _instance_operation(self, op: OperationRecord, now: float) -> None:
        instance = str(op.request.get("instance", ""))
        key = _key(op.deployment_id or "", instance)
        if op.id in self.instance_ops:
            if key not in self.pending:
                self.instance_ops.pop(op.id)
                self._finish(op, OperationStatus.SUCCEEDED)
            elif now - op.created_at > self.settings.operation_timeout:
                self.instance_ops.pop(op.id)
                self._finish(op, OperationStatus.FAILED, 500, "OperationTimedOut", "Timed out.")
            return
        for view in self.views.values():
            for inst in view.instances:
                if inst.deployment_id == op.deployment_id and inst.instance_id == instance:
                    await self.hosts[view.name].instance_action(
                        inst.deployment_id, instance, str(op.request.get("action"))
                    )
                    self.pending[key] = (inst.since, now)
                    self.instance_ops[op.id] = key
                    return
        if now - op.created_at > self.settings.reconcile.lost_after:
            self._finish(
                op, OperationStatus.FAILED, 404, "NotFound", f"No host runs instance {instance}."
            )

    def _event(
        self,
        service: str,
        name: str,
        *,
        slot: str | None = None,
        deployment_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.log.info(name, service=service, slot=slot, deployment=deployment_id, **(fields or {}))
        if service:
            with contextlib.suppress(CumuloError):
                self.store.append_event(
                    service, name, slot=slot, deployment_id=deployment_id, fields=fields
                )


class _ApplyError(TemporaryError):
    code = "ApplyFailed"
