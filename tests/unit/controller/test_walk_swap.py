"""Walk operations, swap rules and instance naming: the refusals name their reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cumulo.controller import walk as walks
from cumulo.controller.errors import (
    OperationInProgress,
    RollbackNotAllowed,
    SwapNotAllowed,
    WalkNotAllowed,
)
from cumulo.controller.records import (
    READY,
    DesiredDeployment,
    DesiredRole,
    HostView,
    InputEndpoint,
    Observed,
    ObservedInstance,
    RoleVersion,
    Slot,
    UpgradeMode,
    WalkKind,
    parse_instance_id,
    resize,
)
from cumulo.controller.swap import check_swap
from cumulo.errors import InputError, NotFoundError

NOW = 1_000.0
V1, V2 = RoleVersion("a", "1"), RoleVersion("b", "1")
HTTP = InputEndpoint("Http", "http", 80)


def dep(dep_id: str = "d1", slot: Slot = Slot.PRODUCTION, *, endpoints=(HTTP,), count: int = 2):
    role = DesiredRole("Web", tuple(range(count)), V1, endpoints)
    return DesiredDeployment(dep_id, "svc", slot, True, 5, (role,))


def ready(*deps: DesiredDeployment, seen_at: float = NOW) -> Observed:
    insts = tuple(
        ObservedInstance(d.id, f"Web_IN_{i}", "Web", "h0", READY, V1, i % 5, 0)
        for d in deps
        for i in d.roles[0].indices
    )
    return Observed((HostView("h0", 0, seen_at, insts),), since=0.0)


def test_instance_names_parse_and_refuse_nonsense() -> None:
    assert parse_instance_id("Front_End_IN_12") == ("Front_End", 12)
    with pytest.raises(InputError, match="is not of the form"):
        parse_instance_id("Front_IN_01")


def test_resize_drops_the_highest_and_fills_the_lowest_free() -> None:
    assert resize((0, 1, 2, 3), 2) == (0, 1)
    assert resize((0, 2), 4) == (0, 1, 2, 3)
    with pytest.raises(InputError):
        resize((0,), -1)


def test_begin_refuses_a_second_update_and_unknown_roles() -> None:
    up = walks.begin(dep(), kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    assert up.revision == 2 and up.walk is not None and up.walk.previous == {"Web": V1}
    with pytest.raises(OperationInProgress, match="has an update in progress"):
        walks.begin(up, kind=WalkKind.CONFIG, versions={"Web": V1}, now=NOW)
    with pytest.raises(NotFoundError, match="Role 'Nope' does not exist"):
        walks.begin(dep(), kind=WalkKind.UPGRADE, versions={"Nope": V2}, now=NOW)


def test_a_count_change_alone_needs_no_walk() -> None:
    scaled = walks.begin(dep(), kind=WalkKind.CONFIG, versions={}, counts={"Web": 5}, now=NOW)
    assert scaled.walk is None and scaled.roles[0].indices == (0, 1, 2, 3, 4)


def test_walk_domain_rules() -> None:
    auto = walks.begin(dep(), kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    with pytest.raises(WalkNotAllowed, match="Auto mode"):
        walks.walk_domain(auto, 0, now=NOW)
    manual = walks.begin(
        dep(), kind=WalkKind.UPGRADE, versions={"Web": V2}, mode=UpgradeMode.MANUAL, now=NOW
    )
    with pytest.raises(WalkNotAllowed, match="waits for update domain 0, not 1"):
        walks.walk_domain(manual, 1, now=NOW)
    during = walks.walk_domain(manual, 0, now=NOW)
    with pytest.raises(WalkNotAllowed, match="still being updated"):
        walks.walk_domain(during, 0, now=NOW)
    with pytest.raises(WalkNotAllowed, match="no update in progress"):
        walks.walk_domain(dep(), 0, now=NOW)


def test_rollback_rules() -> None:
    with pytest.raises(RollbackNotAllowed, match="no update in progress"):
        walks.rollback(dep(), now=NOW)
    up = walks.begin(dep(), kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    back = walks.rollback(up, now=NOW)
    assert back.roles[0].version == V1 and back.walk is not None
    assert back.walk.kind is WalkKind.ROLLBACK and back.walk.previous == {"Web": V2}
    with pytest.raises(RollbackNotAllowed, match="already rolling back"):
        walks.rollback(back, now=NOW)
    status = walks.upgrade_status(up)
    assert status is not None and status["rollback_allowed"] and status["current_domain"] == 0


def test_swap_rules() -> None:
    prod, stag = dep("p"), dep("s", Slot.STAGING)
    check_swap(prod, stag, ready(prod, stag), now=NOW)
    check_swap(None, stag, ready(stag), now=NOW)  # staging only: moves to production
    with pytest.raises(SwapNotAllowed, match="no deployment in the staging slot"):
        check_swap(prod, None, ready(prod), now=NOW)
    other = dep("s", Slot.STAGING, endpoints=(HTTP, InputEndpoint("Https", "https", 443)))
    with pytest.raises(SwapNotAllowed, match=r"only in staging: Https \(https:443\)"):
        check_swap(prod, other, ready(prod, other), now=NOW)
    with pytest.raises(SwapNotAllowed, match=r"not Ready: Web_IN_0, Web_IN_1"):
        check_swap(prod, stag, ready(prod), now=NOW)
    with pytest.raises(SwapNotAllowed, match="not Ready"):
        check_swap(prod, stag, ready(prod, stag, seen_at=NOW - 60), now=NOW)
    upgrading = walks.begin(stag, kind=WalkKind.UPGRADE, versions={"Web": V2}, now=NOW)
    with pytest.raises(SwapNotAllowed, match="update in progress"):
        check_swap(prod, upgrading, ready(prod, stag), now=NOW)
    with pytest.raises(SwapNotAllowed, match="suspended"):
        check_swap(prod, replace(stag, running=False), ready(prod, stag), now=NOW)


def test_preview_says_what_recycles_and_what_applies_in_place() -> None:
    d = dep(count=3)
    obs = ready(d)
    insts = [
        replace(i, sdk_connected=(i.instance_id == "Web_IN_1")) for i in obs.hosts[0].instances
    ]
    new = RoleVersion("a", "2")
    out = walks.preview(d, {"Web": new}, insts)
    assert out[0] == {"update_domain": 0, "recycle": ["Web_IN_0"], "in_place": [], "unchanged": []}
    assert out[1]["in_place"] == ["Web_IN_1"]
