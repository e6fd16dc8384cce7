"""Safety and convergence properties of ``reconcile`` (after Nomad's reconciler prop tests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo.controller import walk as walks
from cumulo.controller.placement import Candidate, spread
from cumulo.controller.plan import (
    RecycleInstance,
    StartInstance,
    StopInstance,
    StopReason,
    UpdateSettings,
)
from cumulo.controller.reconcile import reconcile
from cumulo.controller.records import (
    READY,
    STOPPED,
    Desired,
    DesiredDeployment,
    DesiredRole,
    DomainState,
    HostView,
    InputEndpoint,
    Observed,
    ObservedInstance,
    RoleVersion,
    Slot,
    UpgradeMode,
    Walk,
    WalkKind,
    instance_id,
    update_domain_of,
)
from cumulo.controller.testing import settle

NOW = 1_000.0
FRESH, STALE, LOST = NOW - 1.0, NOW - 20.0, NOW - 100.0
ROLE_NAMES = ("Web", "Worker", "Api")
STATUSES = (READY, READY, READY, "BusyRole", "StartingRole", "CyclingRole", STOPPED)

versions = st.builds(RoleVersion, st.sampled_from("ab"), st.sampled_from("12"))


@st.composite
def deployments(draw: st.DrawFn, dep_id: str, service: str, slot: Slot) -> DesiredDeployment:
    names = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=1, max_size=3, unique=True))
    roles = []
    for name in names:
        count = draw(st.integers(0, 7))
        indices = tuple(sorted(draw(st.sets(st.integers(0, 9), min_size=count, max_size=count))))
        if draw(st.booleans()):
            indices = tuple(range(count))
        endpoints = ()
        if draw(st.booleans()):
            endpoints = (InputEndpoint(f"{name}Http", "http", 80 + ROLE_NAMES.index(name)),)
        roles.append(DesiredRole(name, indices, draw(versions), endpoints))
    udc = draw(st.integers(1, 5))
    running = draw(st.booleans()) or draw(st.booleans())
    walk = None
    if running and draw(st.booleans()):
        mode = draw(st.sampled_from(list(UpgradeMode)))
        walk = Walk(
            kind=draw(st.sampled_from(list(WalkKind))),
            mode=mode,
            domain=draw(st.integers(0, udc - 1)),
            state=draw(st.sampled_from(list(DomainState)))
            if mode is UpgradeMode.MANUAL
            else DomainState.DURING,
            domain_started_at=draw(st.sampled_from([NOW - 5.0, NOW - 5000.0])),
            previous={r.name: draw(versions) for r in roles if draw(st.booleans())},
            instance_timeout=1800.0,
        )
    return DesiredDeployment(dep_id, service, slot, running, udc, tuple(roles), walk, revision=3)


@st.composite
def worlds(
    draw: st.DrawFn, *, seen: st.SearchStrategy[float | None] | None = None
) -> tuple[Desired, Observed]:
    deps = [draw(deployments("d1", "svc", Slot.PRODUCTION))]
    if draw(st.booleans()):
        deps.append(draw(deployments("d2", "svc", Slot.STAGING)))
    if draw(st.booleans()):
        deps.append(draw(deployments("d3", "other", Slot.PRODUCTION)))
    seen = seen if seen is not None else st.sampled_from([FRESH, FRESH, FRESH, STALE, LOST, None])
    host_count = draw(st.integers(1, 4))
    hosts = []
    for n in range(host_count):
        insts = []
        for _ in range(draw(st.integers(0, 6))):
            dep_id = draw(st.sampled_from(["d1", "d2", "d3", "gone"]))
            role = draw(st.sampled_from(ROLE_NAMES))
            index = draw(st.integers(0, 9))
            iid = instance_id(role, index)
            if any(i.deployment_id == dep_id and i.instance_id == iid for i in insts):
                continue
            insts.append(
                ObservedInstance(
                    deployment_id=dep_id,
                    instance_id=iid,
                    role=role,
                    host=f"host{n}",
                    status=draw(st.sampled_from(STATUSES)),
                    version=draw(versions),
                    update_domain=index % 5,
                    fault_domain=n,
                    sdk_connected=draw(st.booleans()),
                    endpoints=tuple(
                        (f"{r}Http", f"host{n}/{iid}:1") for r in ROLE_NAMES if r == role
                    ),
                )
            )
        hosts.append(HostView(f"host{n}", n, draw(seen), tuple(insts)))
    complete = draw(st.booleans()) or draw(st.booleans())
    return Desired(tuple(deps), complete=complete), Observed(tuple(hosts), since=0.0, routes={})


def _present(observed: Observed) -> dict[tuple[str, str], list[ObservedInstance]]:
    """Instances holding their id on hosts that are not lost (as reconcile counts them)."""
    out: dict[tuple[str, str], list[ObservedInstance]] = {}
    for h in observed.hosts:
        if h.seen_at is None or h.seen_at < NOW - 30.0:
            continue
        for i in h.instances:
            if i.status != STOPPED:
                out.setdefault((i.deployment_id, i.instance_id), []).append(i)
    return out


COMMON = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(worlds())
def test_never_more_than_n_instances_per_role(world: tuple[Desired, Observed]) -> None:
    desired, observed = world
    plan = reconcile(desired, observed, now=NOW)
    present = _present(observed)
    starts = plan.of_type(StartInstance)
    assert len({(s.deployment_id, s.instance_id) for s in starts}) == len(starts)
    for dep in desired.deployments:
        for role in dep.roles:
            wanted = {instance_id(role.name, i) for i in role.indices}
            mine = [s for s in starts if s.deployment_id == dep.id and s.role == role.name]
            for s in mine:
                assert s.instance_id in wanted
                assert (dep.id, s.instance_id) not in present
                assert s.update_domain == update_domain_of(
                    int(s.instance_id.rsplit("_", 1)[1]), dep.update_domain_count
                )
            running = {iid for (d, iid) in present if d == dep.id and iid in wanted}
            assert len(running) + len(mine) <= role.count


@COMMON
@given(worlds())
def test_a_walk_stops_no_ready_instance_outside_the_current_domain(
    world: tuple[Desired, Observed],
) -> None:
    desired, observed = world
    plan = reconcile(desired, observed, now=NOW)
    by_key = {
        (i.deployment_id, i.instance_id, i.host): i for h in observed.hosts for i in h.instances
    }
    deps = {d.id: d for d in desired.deployments}
    for action in plan.actions:
        if not isinstance(action, StopInstance | RecycleInstance | UpdateSettings):
            continue
        if isinstance(action, StopInstance) and action.reason is not StopReason.SUSPENDED:
            continue  # removals and duplicates: the instance is not (or no longer) wanted
        dep = deps.get(action.deployment_id)
        if dep is None or dep.walk is None:
            continue
        inst = by_key[(action.deployment_id, action.instance_id, action.host)]
        if not inst.ready:
            continue
        role = dep.role(inst.role)
        assert role is not None
        index = int(action.instance_id.rsplit("_", 1)[1])
        assert dep.walk.current(update_domain_of(index, dep.update_domain_count)), action


@COMMON
@given(worlds())
def test_no_instance_is_recycled_to_code_whose_environment_is_not_built(
    world: tuple[Desired, Observed],
) -> None:
    desired, observed = world
    unprepared = frozenset((d.id, r.name) for d in desired.deployments for r in d.roles)
    plan = reconcile(replace(desired, unprepared=unprepared), observed, now=NOW)
    by_key = {(i.deployment_id, i.instance_id): i for h in observed.hosts for i in h.instances}
    for action in plan.of_type(RecycleInstance):
        inst = by_key[(action.deployment_id, action.instance_id)]
        assert inst.version.code == action.version.code, action  # settings-only recycles


@COMMON
@given(worlds(seen=st.sampled_from([STALE, None])))
def test_a_stale_observation_stops_and_places_nothing(world: tuple[Desired, Observed]) -> None:
    desired, observed = world
    plan = reconcile(desired, observed, now=NOW)
    assert plan.destructive() == []
    assert plan.of_type(StartInstance) == []
    assert plan.requeue_after is not None


@COMMON
@given(worlds())
def test_an_empty_observation_stops_nothing(world: tuple[Desired, Observed]) -> None:
    desired, observed = world
    empty = replace(observed, hosts=tuple(replace(h, instances=()) for h in observed.hosts))
    for obs in (empty, replace(observed, hosts=())):
        assert reconcile(desired, obs, now=NOW).destructive() == []


@COMMON
@given(worlds())
def test_stops_go_only_to_fresh_hosts_and_known_instances(
    world: tuple[Desired, Observed],
) -> None:
    desired, observed = world
    plan = reconcile(desired, observed, now=NOW)
    fresh = {h.name for h in observed.hosts if h.seen_at is not None and h.seen_at >= NOW - 10}
    seen = {(i.deployment_id, i.instance_id, i.host) for h in observed.hosts for i in h.instances}
    known = {d.id for d in desired.deployments}
    for a in plan.destructive():
        assert isinstance(a, StopInstance | RecycleInstance)
        assert a.host in fresh
        assert (a.deployment_id, a.instance_id, a.host) in seen
        if a.deployment_id not in known:
            assert desired.complete


@COMMON
@given(worlds())
def test_reconcile_is_deterministic(world: tuple[Desired, Observed]) -> None:
    desired, observed = world
    assert reconcile(desired, observed, now=NOW) == reconcile(desired, observed, now=NOW)


@COMMON
@given(worlds(seen=st.just(FRESH)))
def test_applying_a_plan_converges_to_an_empty_plan(world: tuple[Desired, Observed]) -> None:
    desired, observed = world
    desired = replace(desired, complete=True)
    has_walk = any(d.walk is not None for d in desired.deployments)
    now = NOW
    plan = reconcile(desired, observed, now=now)
    rounds = 0
    while not plan.empty or _waiting_for_walk(desired):
        desired = _walk_when_asked(desired, now=now)
        desired, observed = settle(plan, desired, observed, now=now)
        rounds += 1
        now += 1.0
        plan = reconcile(desired, observed, now=now)
        if rounds == 1 and not has_walk:
            # One settle leaves no instance work: only routes to the now-Ready instances.
            assert plan.destructive() == [] and plan.of_type(StartInstance) == []
        assert rounds <= 25, plan.describe()
    if not has_walk:
        assert rounds <= 2
    for dep in desired.deployments:
        assert dep.walk is None
        seen = Counter(
            i.instance_id
            for h in observed.hosts
            for i in h.instances
            if i.deployment_id == dep.id and i.status != STOPPED
        )
        want = (
            {instance_id(r.name, i) for r in dep.roles for i in r.indices} if dep.running else set()
        )
        assert set(seen) == want and all(c == 1 for c in seen.values())
        for h in observed.hosts:
            for i in h.instances:
                if i.deployment_id == dep.id and i.status != STOPPED:
                    role = dep.role(i.role)
                    assert role is not None and i.version == role.version
    # Converged: reconciling again is empty.
    assert reconcile(desired, observed, now=now + 1).empty


def _waiting_for_walk(desired: Desired) -> bool:
    return any(
        d.walk is not None and d.walk.state is DomainState.BEFORE for d in desired.deployments
    )


def _walk_when_asked(desired: Desired, *, now: float) -> Desired:
    """What a user of Manual mode does: walk the domain the deployment waits for."""
    deps = []
    for d in desired.deployments:
        if d.walk is not None and d.walk.state is DomainState.BEFORE:
            d = walks.walk_domain(d, d.walk.domain, now=now)
        deps.append(d)
    return replace(desired, deployments=tuple(deps))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(0, 30), st.integers(1, 5))
def test_placement_spreads_a_role_over_fault_domains(hosts: int, count: int, udc: int) -> None:
    dep = DesiredDeployment(
        "d1",
        "svc",
        Slot.PRODUCTION,
        True,
        udc,
        (DesiredRole("Web", tuple(range(count)), RoleVersion("a", "1")),),
    )
    observed = Observed(tuple(HostView(f"h{n}", n, FRESH) for n in range(hosts)), since=0.0)
    starts = reconcile(Desired((dep,)), observed, now=NOW).of_type(StartInstance)
    assert len(starts) == count
    cands = [Candidate(h.name, h.fault_domain) for h in observed.hosts]
    assert spread((s.fault_domain for s in starts), cands) <= 1
    per_ud = Counter(s.update_domain for s in starts)
    if count:
        assert max(per_ud.values()) - min(per_ud.get(u, 0) for u in range(min(udc, count))) <= 1
