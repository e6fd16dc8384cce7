"""When operations end: derived from desired state, the plan and the observation only."""

from __future__ import annotations

from dataclasses import replace

from cumulo.controller.management import Kind
from cumulo.controller.operations import outcome
from cumulo.controller.plan import Plan, StartInstance
from cumulo.controller.records import (
    READY,
    DesiredDeployment,
    DesiredRole,
    DomainState,
    HostView,
    Observed,
    ObservedInstance,
    RoleVersion,
    Slot,
    UpgradeMode,
    Walk,
    WalkKind,
)
from cumulo.storage.store.records import OperationRecord, OperationStatus

V = RoleVersion("a", "1")
DEP = DesiredDeployment("d1", "svc", Slot.PRODUCTION, True, 5, (DesiredRole("Web", (0, 1), V),))


def op(kind: str, **request: object) -> OperationRecord:
    return OperationRecord("op1", kind, "svc", "production", "d1", request=request, created_at=0.0)


def seen(*statuses: str) -> Observed:
    insts = tuple(
        ObservedInstance("d1", f"Web_IN_{n}", "Web", "h0", s, V, n, 0)
        for n, s in enumerate(statuses)
    )
    return Observed((HostView("h0", 0, 10.0, insts),), since=0.0)


def test_create_succeeds_when_every_instance_is_ready() -> None:
    assert outcome(op(Kind.CREATE_DEPLOYMENT), DEP, Plan(), seen(READY, "BusyRole"), now=5) is None
    done = outcome(op(Kind.CREATE_DEPLOYMENT), DEP, Plan(), seen(READY, READY), now=5)
    assert done is not None and done.status is OperationStatus.SUCCEEDED
    pending = Plan((StartInstance("d1", "svc", "Web", "Web_IN_2", "h0", 2, 0, V),))
    assert outcome(op(Kind.CREATE_DEPLOYMENT), DEP, pending, seen(READY, READY), now=5) is None


def test_a_crash_loop_fails_the_operation_after_a_while_and_a_deadline_times_out() -> None:
    obs = seen(READY, "CyclingRole")
    assert outcome(op(Kind.CREATE_DEPLOYMENT), DEP, Plan(), obs, now=60) is None
    failed = outcome(op(Kind.CREATE_DEPLOYMENT), DEP, Plan(), obs, now=121)
    assert failed is not None and failed.error_code == "InstancesFailing"
    assert "Web_IN_1" in (failed.error_message or "")
    late = outcome(op(Kind.CREATE_DEPLOYMENT), DEP, Plan(), seen(READY, "BusyRole"), now=4000)
    assert late is not None and late.error_code == "OperationTimedOut"


def test_walk_manual_upgrade_delete_and_a_deleted_deployment() -> None:
    walk = Walk(WalkKind.UPGRADE, UpgradeMode.MANUAL, 1, DomainState.BEFORE, 0.0, {"Web": V})
    walking = replace(DEP, walk=walk)
    assert outcome(op(Kind.WALK, domain=1), walking, Plan(), seen(), now=1) is None
    assert outcome(op(Kind.WALK, domain=0), walking, Plan(), seen(), now=1) is not None
    manual = op(Kind.UPGRADE, mode="Manual")
    assert outcome(manual, walking, Plan(), seen(), now=1) is not None
    assert outcome(op(Kind.DELETE_DEPLOYMENT), None, Plan(), seen(READY), now=1) is None
    gone = outcome(op(Kind.DELETE_DEPLOYMENT), None, Plan(), seen(), now=1)
    assert gone is not None and gone.status is OperationStatus.SUCCEEDED
    lost = outcome(op(Kind.SWAP), None, Plan(), seen(), now=1)
    assert lost is not None and lost.error_code == "DeploymentDeleted"
