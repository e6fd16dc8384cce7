"""Starting, stepping and rolling back update-domain walks (pure functions on records).

``reconcile`` moves a walk along as instances become Ready; these functions are what the
management operations do to the desired deployment: begin an upgrade or a configuration change,
walk one domain in Manual mode, roll back. Each returns a new ``DesiredDeployment`` with its
revision raised by one, or raises a ``ConflictError`` subclass with a sentence saying why not.

Azure's rules kept here (reference §4.4–4.5): one walk at a time; Manual starts ``Before`` domain
0 and each ``walk n`` must name the current domain; rollback is allowed only while a walk is in
progress, returns the updated instances to the previous version and leaves the others alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cumulo.controller.errors import OperationInProgress, RollbackNotAllowed, WalkNotAllowed
from cumulo.controller.reconcile import domains_in_use
from cumulo.controller.records import (
    DesiredDeployment,
    DesiredRole,
    DomainState,
    ObservedInstance,
    RoleVersion,
    UpgradeMode,
    Walk,
    WalkKind,
    resize,
    update_domain_of,
)
from cumulo.errors import InputError, NotFoundError


def begin(
    dep: DesiredDeployment,
    *,
    kind: WalkKind,
    versions: Mapping[str, RoleVersion],
    counts: Mapping[str, int] | None = None,
    mode: UpgradeMode = UpgradeMode.AUTO,
    now: float,
    instance_timeout: float = 1800.0,
    force: bool = False,
) -> DesiredDeployment:
    """The deployment with new role versions (and instance counts) and, if a version changed, a
    walk over its update domains. Count changes alone need no walk (scale out/in)."""
    if dep.walk is not None:
        raise OperationInProgress(
            f"Deployment {dep.id} has an update in progress "
            f"({dep.walk.kind.value}, update domain {dep.walk.domain}); "
            "walk it to the end or roll it back first."
        )
    names = {r.name for r in dep.roles}
    for name in [*versions, *(counts or {})]:
        if name not in names:
            raise NotFoundError(
                f"Role {name!r} does not exist in deployment {dep.id}; "
                f"its roles are {', '.join(sorted(names))}."
            )
    previous: dict[str, RoleVersion] = {}
    roles: list[DesiredRole] = []
    for role in dep.roles:
        new = versions.get(role.name, role.version)
        if new != role.version:
            previous[role.name] = role.version
        indices = role.indices
        if counts is not None and role.name in counts:
            indices = resize(role.indices, counts[role.name])
        roles.append(replace(role, version=new, indices=indices))
    walk = None
    if previous:
        walk = Walk(
            kind=kind,
            mode=mode,
            domain=0,
            state=DomainState.BEFORE if mode is UpgradeMode.MANUAL else DomainState.DURING,
            domain_started_at=now,
            previous=previous,
            instance_timeout=instance_timeout,
            force=force,
        )
    return replace(dep, roles=tuple(roles), walk=walk, revision=dep.revision + 1)


def walk_domain(dep: DesiredDeployment, domain: int, *, now: float) -> DesiredDeployment:
    """Manual mode: start update domain ``domain`` (it must be the one the walk waits for)."""
    walk = dep.walk
    if walk is None:
        raise WalkNotAllowed(f"Deployment {dep.id} has no update in progress to walk.")
    if walk.mode is not UpgradeMode.MANUAL:
        raise WalkNotAllowed(
            f"The update of deployment {dep.id} runs in {walk.mode.value} mode; "
            "only Manual updates are walked domain by domain."
        )
    if walk.state is DomainState.DURING:
        raise WalkNotAllowed(
            f"Update domain {walk.domain} of deployment {dep.id} is still being updated; "
            "wait until it is done."
        )
    if domain != walk.domain:
        raise WalkNotAllowed(
            f"Deployment {dep.id} waits for update domain {walk.domain}, not {domain}; "
            "domains are walked in order."
        )
    new_walk = replace(walk, state=DomainState.DURING, domain_started_at=now)
    return replace(dep, walk=new_walk, revision=dep.revision + 1)


def rollback(
    dep: DesiredDeployment,
    *,
    mode: UpgradeMode = UpgradeMode.AUTO,
    now: float,
    force: bool = False,
) -> DesiredDeployment:
    """Return the roles to their versions before the walk in progress, as a new walk."""
    walk = dep.walk
    if walk is None:
        raise RollbackNotAllowed(
            f"Deployment {dep.id} has no update in progress; rollback is allowed only while an "
            "upgrade or configuration change is under way."
        )
    if walk.kind is WalkKind.ROLLBACK:
        raise RollbackNotAllowed(f"Deployment {dep.id} is already rolling back.")
    if mode is UpgradeMode.SIMULTANEOUS:
        raise InputError("A rollback runs in Auto or Manual mode (as Azure's).")
    roles = tuple(replace(r, version=walk.previous.get(r.name, r.version)) for r in dep.roles)
    undone = {r.name: r.version for r in dep.roles if r.name in walk.previous}
    new_walk = Walk(
        kind=WalkKind.ROLLBACK,
        mode=mode,
        domain=0,
        state=DomainState.BEFORE if mode is UpgradeMode.MANUAL else DomainState.DURING,
        domain_started_at=now,
        previous=undone,
        instance_timeout=walk.instance_timeout,
        force=force,
    )
    return replace(dep, roles=roles, walk=new_walk, revision=dep.revision + 1)


def finish(dep: DesiredDeployment) -> DesiredDeployment:
    return replace(dep, walk=None, revision=dep.revision + 1)


def advance(
    dep: DesiredDeployment, domain: int, state: DomainState, *, now: float
) -> DesiredDeployment:
    assert dep.walk is not None
    new_walk = replace(dep.walk, domain=domain, state=state, domain_started_at=now)
    return replace(dep, walk=new_walk, revision=dep.revision + 1)


def upgrade_status(dep: DesiredDeployment) -> dict[str, Any] | None:
    """Azure's ``UpgradeStatus`` (None when idle), as the API and ``status --json`` show it."""
    walk = dep.walk
    if walk is None:
        return None
    return {
        "type": walk.kind.value,
        "mode": walk.mode.value,
        "current_domain": walk.domain,
        "current_domain_state": walk.state.value,
        "domain_count": domains_in_use(dep),
        "roles": sorted(walk.previous),
        "rollback_allowed": walk.kind is not WalkKind.ROLLBACK,
    }


def preview(
    dep: DesiredDeployment,
    versions: Mapping[str, RoleVersion],
    observed: list[ObservedInstance],
) -> list[dict[str, Any]]:
    """What an update would do, per update domain: which instances recycle and which take the
    change in place. Changes nothing (``cumulo upgrade --plan``)."""
    by_id = {i.instance_id: i for i in observed if i.deployment_id == dep.id}
    domains: dict[int, dict[str, list[str]]] = {}
    for role in dep.roles:
        new = versions.get(role.name, role.version)
        for index in role.indices:
            iid = f"{role.name}_IN_{index}"
            ud = update_domain_of(index, dep.update_domain_count)
            slot = domains.setdefault(ud, {"recycle": [], "in_place": [], "unchanged": []})
            inst = by_id.get(iid)
            current = inst.version if inst is not None else role.version
            if current == new:
                slot["unchanged"].append(iid)
            elif current.code != new.code or inst is None or not inst.sdk_connected:
                slot["recycle"].append(iid)
            else:
                slot["in_place"].append(iid)
    return [{"update_domain": ud, **domains[ud]} for ud in sorted(domains)]
