"""VIP swap rules (pure), after Azure's (reference §4.2).

A swap is refused, with a sentence naming the reason, when:
- there is no deployment in staging;
- either deployment has an update in progress;
- the two deployments' input endpoints differ (name, protocol or port);
- not every instance of both deployments runs (Running status, every wanted instance Ready on a
  fresh host).
With staging only, staging moves to production. The exchange itself is one store transaction
(the slots of the two deployments change together) and then one load-balancer call that replaces
both route tables of the service (``SetRoutes``), so the flip is atomic for new connections.
"""

from __future__ import annotations

from cumulo.controller.errors import SwapNotAllowed
from cumulo.controller.reconcile import Freshness, host_freshness
from cumulo.controller.records import (
    DesiredDeployment,
    Observed,
    ReconcileSettings,
    instance_id,
)


def not_running(
    dep: DesiredDeployment, observed: Observed, *, now: float, settings: ReconcileSettings
) -> list[str]:
    """The wanted instances of ``dep`` that are not Ready on a fresh host."""
    ready: set[str] = set()
    for host in observed.hosts:
        fresh = host_freshness(host, observed, now=now, settings=settings)
        if fresh is not Freshness.FRESH:
            continue
        ready |= {i.instance_id for i in host.instances if i.deployment_id == dep.id and i.ready}
    wanted = [instance_id(r.name, i) for r in dep.roles for i in r.indices]
    return [iid for iid in wanted if iid not in ready]


def check_swap(
    production: DesiredDeployment | None,
    staging: DesiredDeployment | None,
    observed: Observed,
    *,
    now: float,
    settings: ReconcileSettings | None = None,
) -> None:
    """Raise ``SwapNotAllowed`` unless the swap may happen now."""
    settings = settings or ReconcileSettings()
    if staging is None:
        raise SwapNotAllowed("There is no deployment in the staging slot to swap.")
    pair = [staging] if production is None else [production, staging]
    for dep in pair:
        if dep.walk is not None:
            raise SwapNotAllowed(
                f"The {dep.slot.value} deployment {dep.id} has an update in progress; "
                "a swap waits until it finishes or is rolled back."
            )
    if production is not None:
        a, b = production.input_endpoints(), staging.input_endpoints()
        if a != b:
            only_p = ", ".join(f"{e.name} ({e.protocol}:{e.port})" for e in sorted(a - b))
            only_s = ", ".join(f"{e.name} ({e.protocol}:{e.port})" for e in sorted(b - a))
            raise SwapNotAllowed(
                "The input endpoints of production and staging differ "
                f"(only in production: {only_p or 'none'}; only in staging: {only_s or 'none'}); "
                "a swap needs the same endpoints in both slots."
            )
    for dep in pair:
        if not dep.running:
            raise SwapNotAllowed(
                f"The {dep.slot.value} deployment {dep.id} is suspended; start it before a swap."
            )
        missing = not_running(dep, observed, now=now, settings=settings)
        if missing:
            shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
            raise SwapNotAllowed(
                f"Not every instance of the {dep.slot.value} deployment {dep.id} is running "
                f"(not Ready: {shown}); a swap needs all of them Ready."
            )
