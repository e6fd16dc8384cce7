"""Scenarios of ``reconcile``: scaling, healing, freshness, walks, routes."""

from __future__ import annotations

from dataclasses import replace

from cumulo.controller import walk as walks
from cumulo.controller.plan import (
    AdvanceWalk,
    FinishWalk,
    RecycleInstance,
    RecycleReason,
    SetRoutes,
    StartInstance,
    StopInstance,
    StopReason,
    UpdateSettings,
)
from cumulo.controller.reconcile import reconcile
from cumulo.controller.records import (
    Desired,
    DesiredDeployment,
    DesiredRole,
    DomainState,
    HostView,
    InputEndpoint,
    Observed,
    RoleVersion,
    Slot,
    UpgradeMode,
    WalkKind,
)
from cumulo.controller.testing import settle

NOW = 1_000.0
V1 = RoleVersion("code1", "set1")
V2 = RoleVersion("code2", "set1")
V1B = RoleVersion("code1", "set2")
HTTP = InputEndpoint("Http", "http", 80)


def dep(count: int = 2, *, udc: int = 5, running: bool = True, version: RoleVersion = V1):
    role = DesiredRole("Web", tuple(range(count)), version, (HTTP,))
    return DesiredDeployment("d1", "svc", Slot.PRODUCTION, running, udc, (role,), revision=1)


def world(hosts: int = 2) -> Observed:
    return Observed(tuple(HostView(f"h{n}", n, NOW) for n in range(hosts)), since=0.0, routes={})


def converge(d: DesiredDeployment, obs: Observed, *, rounds: int = 10):
    desired = Desired((d,))
    now = NOW
    for _ in range(rounds):
        plan = reconcile(desired, obs, now=now)
        if plan.empty:
            return desired.deployments[0], obs
        desired, obs = settle(plan, desired, obs, now=now)
        now += 1
    raise AssertionError("did not converge")


def test_a_new_deployment_places_azure_named_instances_round_robin() -> None:
    plan = reconcile(Desired((dep(10),)), world(3), now=NOW)
    starts = plan.of_type(StartInstance)
    assert [s.instance_id for s in starts] == [f"Web_IN_{i}" for i in range(10)]
    assert [s.update_domain for s in starts] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    per_host = {h: sum(s.host == h for s in starts) for h in ("h0", "h1", "h2")}
    assert sorted(per_host.values()) == [3, 3, 4]


def test_routes_list_only_ready_instances_and_come_first() -> None:
    d, obs = converge(dep(2), world())
    routes = obs.routes["svc"]  # type: ignore[index]
    assert routes.production is not None and routes.staging is None
    assert [b.instance_id for b in routes.production.endpoints[0].backends] == [
        "Web_IN_0",
        "Web_IN_1",
    ]
    # Scale in to 1: the route goes first, then the stop.
    d2 = replace(d, roles=(replace(d.roles[0], indices=(0,)),))
    plan = reconcile(Desired((d2,)), obs, now=NOW + 5)
    assert isinstance(plan.actions[0], SetRoutes)
    assert plan.of_type(StopInstance) == [StopInstance("d1", "Web_IN_1", "h1", StopReason.SCALE_IN)]
    backends = plan.actions[0].routes.production.endpoints[0].backends  # type: ignore[union-attr]
    assert [b.instance_id for b in backends] == ["Web_IN_0"]


def test_a_stale_host_blocks_placement_and_a_lost_host_is_healed() -> None:
    d, obs = converge(dep(2), world())
    h0, h1 = obs.hosts
    stale = replace(obs, hosts=(replace(h0, seen_at=NOW + 10), replace(h1, seen_at=NOW - 5)))
    plan = reconcile(Desired((d,)), stale, now=NOW + 20)
    assert plan.of_type(StartInstance) == [] and plan.destructive() == []
    lost_at = NOW + 40
    lost = replace(obs, hosts=(replace(h0, seen_at=lost_at), replace(h1, seen_at=NOW - 5)))
    starts = reconcile(Desired((d,)), lost, now=lost_at).of_type(StartInstance)
    assert [(s.instance_id, s.host) for s in starts] == [("Web_IN_1", "h0")]


def test_a_host_that_comes_back_has_its_duplicate_stopped() -> None:
    d, obs = converge(dep(2), world())
    h0, h1 = obs.hosts
    moved = replace(h0, instances=(*h0.instances, replace(h1.instances[0], host="h0")))
    plan = reconcile(Desired((d,)), replace(obs, hosts=(moved, h1)), now=NOW + 5)
    assert plan.of_type(StopInstance) == [
        StopInstance("d1", "Web_IN_1", "h1", StopReason.DUPLICATE)
    ]


def test_unknown_deployments_are_stopped_only_when_the_store_was_read_in_full() -> None:
    _, obs = converge(dep(1), world(1))
    assert reconcile(Desired((), complete=False), obs, now=NOW + 5).destructive() == []
    stops = reconcile(Desired(()), obs, now=NOW + 5).of_type(StopInstance)
    assert [s.reason for s in stops] == [StopReason.DEPLOYMENT_REMOVED]


def test_suspend_stops_every_instance_and_empties_the_vip() -> None:
    d, obs = converge(dep(2), world())
    plan = reconcile(Desired((replace(d, running=False),)), obs, now=NOW + 5)
    assert {s.reason for s in plan.of_type(StopInstance)} == {StopReason.SUSPENDED}
    (routes,) = plan.of_type(SetRoutes)
    assert routes.routes.production is not None
    assert routes.routes.production.endpoints[0].backends == ()


def test_settings_apply_in_place_with_sdk_and_by_recycle_without() -> None:
    d, obs = converge(dep(2, udc=1), world())
    h0, h1 = obs.hosts
    no_sdk = replace(h1, instances=tuple(replace(i, sdk_connected=False) for i in h1.instances))
    obs = replace(obs, hosts=(h0, no_sdk))
    changed = walks.begin(d, kind=WalkKind.CONFIG, versions={"Web": V1B}, now=NOW)
    plan = reconcile(Desired((changed,)), obs, now=NOW + 1)
    assert [a.instance_id for a in plan.of_type(UpdateSettings)] == ["Web_IN_0"]
    assert [(a.instance_id, a.reason) for a in plan.of_type(RecycleInstance)] == [
        ("Web_IN_1", RecycleReason.SETTINGS)
    ]


def test_an_auto_upgrade_walks_one_domain_at_a_time() -> None:
    d, obs = converge(dep(4, udc=2), world())
    up = walks.begin(d, kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    plan = reconcile(Desired((up,)), obs, now=NOW + 1)
    assert sorted(a.instance_id for a in plan.of_type(RecycleInstance)) == ["Web_IN_0", "Web_IN_2"]
    desired, obs = settle(plan, Desired((up,)), obs, now=NOW + 1)
    plan = reconcile(desired, obs, now=NOW + 2)
    assert plan.of_type(AdvanceWalk) == [AdvanceWalk("d1", up.revision, 1, DomainState.DURING)]
    desired, obs = settle(plan, desired, obs, now=NOW + 2)
    plan = reconcile(desired, obs, now=NOW + 3)
    assert sorted(a.instance_id for a in plan.of_type(RecycleInstance)) == ["Web_IN_1", "Web_IN_3"]
    desired, obs = settle(plan, desired, obs, now=NOW + 3)
    plan = reconcile(desired, obs, now=NOW + 4)
    assert len(plan.of_type(FinishWalk)) == 1


def test_an_upgrade_waits_for_its_dependency_environment_and_stops_nothing() -> None:
    d, obs = converge(dep(4, udc=2), world())
    up = walks.begin(d, kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW, instance_timeout=0)
    # Past the per-instance timeout: the walk still does not move on without the build.
    plan = reconcile(Desired((up,), unprepared=frozenset({("d1", "Web")})), obs, now=NOW + 1)
    assert plan.of_type(RecycleInstance) == [] and plan.of_type(StopInstance) == []
    assert plan.of_type(AdvanceWalk) == [] and plan.of_type(FinishWalk) == []
    assert "dependency environment of role Web" in " ".join(plan.waiting)
    routes = plan.of_type(SetRoutes)  # every instance stays in rotation
    assert all(len(r.routes.production.endpoints[0].backends) == 4 for r in routes)  # type: ignore[union-attr]
    # Built: the walk goes on as usual.
    plan = reconcile(Desired((up,)), obs, now=NOW + 2)
    assert sorted(a.instance_id for a in plan.of_type(RecycleInstance)) == ["Web_IN_0", "Web_IN_2"]


def test_a_manual_walk_waits_before_each_domain() -> None:
    d, obs = converge(dep(4, udc=2), world())
    up = walks.begin(
        d, kind=WalkKind.UPGRADE, versions={"Web": V2}, mode=UpgradeMode.MANUAL, now=NOW
    )
    plan = reconcile(Desired((up,)), obs, now=NOW + 1)
    assert plan.actions == () and "waits for 'walk' of update domain 0" in plan.waiting[0]
    stepped = walks.walk_domain(up, 0, now=NOW + 1)
    plan = reconcile(Desired((stepped,)), obs, now=NOW + 2)
    assert len(plan.of_type(RecycleInstance)) == 2
    desired, obs = settle(plan, Desired((stepped,)), obs, now=NOW + 2)
    plan = reconcile(desired, obs, now=NOW + 3)
    assert plan.of_type(AdvanceWalk) == [AdvanceWalk("d1", stepped.revision, 1, DomainState.BEFORE)]


def test_an_instance_that_never_becomes_ready_holds_the_walk_until_its_timeout() -> None:
    d, obs = converge(dep(2, udc=2), world(1))
    up = walks.begin(d, kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW, instance_timeout=60)
    (h0,) = obs.hosts
    busy = tuple(
        replace(i, version=V2, status="BusyRole") if i.instance_id == "Web_IN_0" else i
        for i in h0.instances
    )
    obs = replace(obs, hosts=(replace(h0, instances=busy, seen_at=NOW + 59),))
    assert reconcile(Desired((up,)), obs, now=NOW + 59).of_type(AdvanceWalk) == []
    obs = replace(obs, hosts=(replace(obs.hosts[0], seen_at=NOW + 61),))
    plan = reconcile(Desired((up,)), obs, now=NOW + 61)
    assert plan.of_type(AdvanceWalk) == [AdvanceWalk("d1", up.revision, 1, DomainState.DURING)]
    assert "timed out" in plan.waiting[0]


def test_rollback_returns_updated_instances_and_leaves_the_others() -> None:
    d, obs = converge(dep(4, udc=2), world())
    up = walks.begin(d, kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    desired, obs = settle(reconcile(Desired((up,)), obs, now=NOW), Desired((up,)), obs, now=NOW)
    back = walks.rollback(desired.deployments[0], now=NOW + 1)
    assert back.roles[0].version == V1 and back.walk is not None
    plan = reconcile(Desired((back,)), obs, now=NOW + 1)
    assert sorted(a.instance_id for a in plan.of_type(RecycleInstance)) == ["Web_IN_0", "Web_IN_2"]
    final, obs = converge(back, obs)
    assert final.walk is None
    assert {i.version for h in obs.hosts for i in h.instances} == {V1}
