"""When an operation is finished (pure): derived from the store and the latest observation only,
so a controller restarted in the middle of an operation finishes it the same way.

- ``DeleteDeployment``: no host reports an instance of the deployment any more.
- ``WalkUpgradeDomain`` n: the walk has moved past domain n (or finished).
- ``UpgradeDeployment`` / ``ChangeDeploymentConfiguration`` in Manual mode: accepted is done
  (Azure's Manual upgrade returns, then each ``walk`` is its own operation).
- Everything else (create, status, swap, Auto/Simultaneous updates, rollback, delete instances):
  the deployment has converged — no walk, no pending action for it in the plan, and every wanted
  instance Ready (Running) or none left (Suspended).
- Reboot/reimage/rebuild are finished by the loop when the host agent answers.
An operation older than ``failing_after`` seconds while some of its instances crash-loop
(``CyclingRole``, ``FailedStartingRole``) fails with ``InstancesFailing`` naming them — the
deployment stays and its hosts keep retrying, but the deployment is no longer locked. Any
operation older than ``timeout`` seconds fails with ``OperationTimedOut``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cumulo.controller.management import Kind
from cumulo.controller.plan import INSTANCE_ACTIONS, Plan, SetRoutes
from cumulo.controller.records import STOPPED, DesiredDeployment, Observed, instance_id
from cumulo.storage.store.records import OperationRecord, OperationStatus

INSTANCE_KINDS = frozenset({Kind.REBOOT, Kind.REIMAGE, Kind.REBUILD})
FAILING = frozenset({"CyclingRole", "FailedStartingRole"})


@dataclass(frozen=True)
class Outcome:
    status: OperationStatus
    http_status: int = 200
    error_code: str | None = None
    error_message: str | None = None


def _present(observed: Observed, deployment_id: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for host in observed.hosts:
        for inst in host.instances:
            if inst.deployment_id == deployment_id and inst.status != STOPPED:
                out[inst.instance_id] = out.get(inst.instance_id, False) or inst.ready
    return out


def converged(dep: DesiredDeployment, plan: Plan, observed: Observed) -> bool:
    if dep.walk is not None:
        return False
    for action in plan.actions:
        if isinstance(action, INSTANCE_ACTIONS) and action.deployment_id == dep.id:
            return False
        if isinstance(action, SetRoutes) and action.routes.service == dep.service:
            return False
    present = _present(observed, dep.id)
    if not dep.running:
        return not present
    wanted = [instance_id(r.name, i) for r in dep.roles for i in r.indices]
    return all(present.get(iid, False) for iid in wanted)


def outcome(
    op: OperationRecord,
    dep: DesiredDeployment | None,
    plan: Plan,
    observed: Observed,
    *,
    now: float,
    timeout: float = 3600.0,
    failing_after: float = 120.0,
) -> Outcome | None:
    """The operation's end, or None while it is still in progress."""
    if op.status is not OperationStatus.IN_PROGRESS or op.kind in INSTANCE_KINDS:
        return None
    done = False
    if op.kind == Kind.DELETE_DEPLOYMENT:
        done = op.deployment_id is not None and not _present(observed, op.deployment_id)
    elif dep is None:
        return Outcome(
            OperationStatus.FAILED,
            409,
            "DeploymentDeleted",
            "The deployment was deleted before the operation finished.",
        )
    elif op.kind == Kind.WALK:
        domain = int(op.request.get("domain", 0))
        done = dep.walk is None or dep.walk.domain > domain
    elif (
        op.kind in (Kind.UPGRADE, Kind.CHANGE_CONFIGURATION) and op.request.get("mode") == "Manual"
    ):
        done = True
    else:
        done = converged(dep, plan, observed)
    if done:
        return Outcome(OperationStatus.SUCCEEDED)
    if dep is not None and now - op.created_at > failing_after:
        failing = sorted(
            {
                i.instance_id
                for h in observed.hosts
                for i in h.instances
                if i.deployment_id == dep.id and i.status in FAILING
            }
        )
        if failing:
            return Outcome(
                OperationStatus.FAILED,
                500,
                "InstancesFailing",
                f"Instances {', '.join(failing)} keep failing to start (see 'cumulo logs'); "
                "their hosts keep retrying.",
            )
    if now - op.created_at > timeout:
        return Outcome(
            OperationStatus.FAILED,
            500,
            "OperationTimedOut",
            f"The operation did not finish within {timeout:.0f} seconds"
            + (f"; waiting: {' '.join(plan.waiting)}" if plan.waiting else "."),
        )
    return None
