"""A pure model of a perfect world, for testing ``reconcile`` (kopf's ``testing`` idea).

``settle(plan, desired, observed, now=...)`` returns the desired and observed state after every
action of ``plan`` succeeded and every instance that runs became Ready. Tests use it to
check that plans converge and that a converged state gives an empty plan.
"""

from __future__ import annotations

from dataclasses import replace

from cumulo.controller import walk as walks
from cumulo.controller.plan import (
    AdvanceWalk,
    FinishWalk,
    Plan,
    RecycleInstance,
    SetRoutes,
    StartInstance,
    StopInstance,
    UpdateSettings,
)
from cumulo.controller.records import (
    READY,
    STOPPED,
    Desired,
    DesiredDeployment,
    DesiredRole,
    HostView,
    Observed,
    ObservedInstance,
    RoleVersion,
    ServiceRoutes,
)


def endpoints_for(role: DesiredRole, host: str, iid: str) -> tuple[tuple[str, str], ...]:
    """A made-up but stable address per endpoint of an instance."""
    return tuple(
        (e.name, f"{host}/{iid}:{20000 + n}") for n, e in enumerate(sorted(role.input_endpoints))
    )


def settle(
    plan: Plan, desired: Desired, observed: Observed, *, now: float
) -> tuple[Desired, Observed]:
    deps = {d.id: d for d in desired.deployments}
    hosts = {h.name: h for h in observed.hosts}
    instances: dict[str, list[ObservedInstance]] = {h: list(v.instances) for h, v in hosts.items()}
    routes = dict(observed.routes or {})

    def find(host: str, dep_id: str, iid: str) -> int:
        for n, inst in enumerate(instances[host]):
            if inst.deployment_id == dep_id and inst.instance_id == iid:
                return n
        raise AssertionError(f"{iid} of {dep_id} is not on {host}")

    def with_version(inst: ObservedInstance, version: RoleVersion) -> ObservedInstance:
        return replace(inst, version=version, status=READY, since=now)

    for action in plan.actions:
        match action:
            case SetRoutes():
                routes[action.routes.service] = action.routes
            case StopInstance():
                instances[action.host].pop(
                    find(action.host, action.deployment_id, action.instance_id)
                )
            case RecycleInstance() | UpdateSettings():
                n = find(action.host, action.deployment_id, action.instance_id)
                instances[action.host][n] = with_version(instances[action.host][n], action.version)
            case StartInstance():
                role = deps[action.deployment_id].role(action.role)
                assert role is not None
                instances[action.host].append(
                    ObservedInstance(
                        deployment_id=action.deployment_id,
                        instance_id=action.instance_id,
                        role=action.role,
                        host=action.host,
                        status=READY,
                        version=action.version,
                        update_domain=action.update_domain,
                        fault_domain=action.fault_domain,
                        since=now,
                        sdk_connected=True,
                        endpoints=endpoints_for(role, action.host, action.instance_id),
                    )
                )
            case AdvanceWalk():
                dep = deps[action.deployment_id]
                assert dep.revision == action.revision
                deps[dep.id] = walks.advance(dep, action.domain, action.state, now=now)
            case FinishWalk():
                dep = deps[action.deployment_id]
                assert dep.revision == action.revision
                deps[dep.id] = walks.finish(dep)
    # A perfect world: every instance that runs comes to be Ready.
    for name, items in instances.items():
        instances[name] = [
            i if i.status in (READY, STOPPED) else replace(i, status=READY, since=now)
            for i in items
        ]
    new_hosts = tuple(
        replace(h, seen_at=now if h.seen_at is not None else None, instances=tuple(instances[n]))
        for n, h in hosts.items()
    )
    new_routes: dict[str, ServiceRoutes] = {k: v for k, v in routes.items() if not v.empty}
    return (
        replace(desired, deployments=tuple(deps.values())),
        replace(observed, hosts=new_hosts, routes=new_routes),
    )


def hosts(count: int, *, seen_at: float | None) -> tuple[HostView, ...]:
    """``count`` empty hosts ``host0``…, each its own fault domain."""
    return tuple(HostView(f"host{n}", n, seen_at) for n in range(count))


def deployment_instances(observed: Observed, dep: DesiredDeployment) -> list[ObservedInstance]:
    return [i for h in observed.hosts for i in h.instances if i.deployment_id == dep.id]
