"""What ``GET`` of a deployment shows: the stored record, its desired state and what the hosts
report, shaped after Azure's Get Deployment (status, instances with UD/FD, VIPs, upgrade status,
``rollback_allowed``, ``locked``). Pure."""

from __future__ import annotations

from typing import Any

from cumulo.controller import walk as walks
from cumulo.controller.records import (
    STOPPED,
    DesiredDeployment,
    Observed,
    ObservedInstance,
    instance_id,
    update_domain_of,
)
from cumulo.storage.store.records import DeploymentRecord, OperationRecord

UNKNOWN = "RoleStateUnknown"


def _instances(dep: DesiredDeployment, observed: Observed | None) -> dict[str, ObservedInstance]:
    out: dict[str, ObservedInstance] = {}
    for host in observed.hosts if observed else ():
        for inst in host.instances:
            if inst.deployment_id != dep.id:
                continue
            have = out.get(inst.instance_id)
            if have is None or (inst.ready and not have.ready):
                out[inst.instance_id] = inst
    return out


def _in_rotation(dep: DesiredDeployment, observed: Observed | None) -> set[str]:
    """Instances the load balancer was last told it may route to (in whichever slot the
    deployment is now): a Ready instance is in rotation once the next route table is set."""
    out: set[str] = set()
    routes = observed.routes.get(dep.service) if observed and observed.routes else None
    for slot_routes in (routes.production, routes.staging) if routes else ():
        if slot_routes is None or slot_routes.deployment_id != dep.id:
            continue
        for endpoint in slot_routes.endpoints:
            out.update(b.instance_id for b in endpoint.backends if b.routable)
    return out


def _health(inst: ObservedInstance | None) -> dict[str, Any]:
    """What the host says of an instance besides its status: why (``detail``), how often it
    was restarted, and what it uses (CPU % of its VM size's cores, resident memory in MiB)."""
    usage = inst.usage if inst is not None else None
    return {
        "detail": inst.detail if inst is not None else "",
        "restarts": inst.restarts if inst is not None else 0,
        "cpu_percent": None
        if usage is None or usage.cpu_percent is None
        else round(usage.cpu_percent, 1),
        "memory_mb": usage.memory_mb if usage is not None else None,
    }


def deployment_view(
    record: DeploymentRecord,
    dep: DesiredDeployment,
    observed: Observed | None,
    running_operation: OperationRecord | None = None,
) -> dict[str, Any]:
    seen = _instances(dep, observed)
    rotation = _in_rotation(dep, observed)
    balanced = {r.name for r in dep.roles if r.input_endpoints}
    instances: list[dict[str, Any]] = []
    wanted: set[str] = set()
    for role in dep.roles:
        for index in role.indices:
            iid = instance_id(role.name, index)
            wanted.add(iid)
            inst = seen.get(iid)
            instances.append(
                {
                    "id": iid,
                    "role": role.name,
                    "status": inst.status if inst else (UNKNOWN if dep.running else STOPPED),
                    "update_domain": update_domain_of(index, dep.update_domain_count),
                    "fault_domain": inst.fault_domain if inst else None,
                    "host": inst.host if inst else None,
                    "endpoints": dict(inst.endpoints) if inst else {},
                    "in_rotation": iid in rotation if role.name in balanced else None,
                    **_health(inst),
                }
            )
    for iid, inst in sorted(seen.items()):
        if iid not in wanted:  # being removed (scale-in, delete)
            instances.append(
                {
                    "id": iid,
                    "role": inst.role,
                    "status": inst.status,
                    "update_domain": inst.update_domain,
                    "fault_domain": inst.fault_domain,
                    "host": inst.host,
                    "endpoints": dict(inst.endpoints),
                    "in_rotation": iid in rotation if inst.role in balanced else None,
                    **_health(inst),
                }
            )
    all_ready = all(i["status"] == "ReadyRole" for i in instances if i["id"] in wanted)
    if dep.running:
        status = "Running" if all_ready and dep.walk is None else "RunningTransitioning"
    else:
        status = "Suspended" if not seen else "SuspendedTransitioning"
    vips = dict(observed.vips.get((dep.service, dep.slot.value), {})) if observed else {}
    upgrade = walks.upgrade_status(dep)
    return {
        "id": record.id,
        "name": record.name,
        "label": record.label,
        "service": record.service,
        "slot": record.slot,
        "status": status,
        "desired_status": record.status,
        "revision": record.revision,
        "etag": record.etag,
        "package": record.package_digest,
        "configuration": record.configuration,
        "update_domain_count": dep.update_domain_count,
        "roles": [
            {
                "name": r.name,
                "instance_count": r.count,
                "input_endpoints": [
                    {"name": e.name, "protocol": e.protocol, "port": e.port}
                    for e in r.input_endpoints
                ],
            }
            for r in dep.roles
        ],
        "vips": vips,
        "upgrade": upgrade,
        "rollback_allowed": bool(upgrade and upgrade["rollback_allowed"]),
        "locked": running_operation is not None,
        "operation": running_operation.id if running_operation else None,
        "instances": instances,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
