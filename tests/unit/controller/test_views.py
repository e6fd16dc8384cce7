"""``deployment_view``: an instance is ``in_rotation`` once the load balancer's last route table
lets new connections go to it, in whichever slot its deployment is now; a role without input
endpoints has no rotation (``None``)."""

from __future__ import annotations

from cumulo.controller.records import (
    Backend,
    DesiredDeployment,
    DesiredRole,
    EndpointRoute,
    HostView,
    InputEndpoint,
    Observed,
    ObservedInstance,
    RoleVersion,
    ServiceRoutes,
    Slot,
    SlotRoutes,
)
from cumulo.controller.views import deployment_view
from cumulo.storage.store.records import DeploymentRecord

V = RoleVersion("c", "s")
WEB = DesiredRole("Web", (0, 1), V, (InputEndpoint("Http", "http", 80),))
WORKER = DesiredRole("Worker", (0,), V)
DEP = DesiredDeployment("d1", "shop", Slot.STAGING, True, 2, (WEB, WORKER))
RECORD = DeploymentRecord("d1", "shop", "staging", "d1", "Running", "sha256:x", "<cfg/>")


def observed(routes: ServiceRoutes | None) -> Observed:
    instances = tuple(
        ObservedInstance("d1", iid, iid.split("_")[0], "host0", "ReadyRole", V, 0, 0)
        for iid in ("Web_IN_0", "Web_IN_1", "Worker_IN_0")
    )
    return Observed(
        (HostView("host0", 0, 1.0, instances),), 0.0, {"shop": routes} if routes else {}
    )


def rotation(routes: ServiceRoutes | None) -> dict[str, bool | None]:
    view = deployment_view(RECORD, DEP, observed(routes))
    return {i["id"]: i["in_rotation"] for i in view["instances"]}


def table(deployment: str, *backends: Backend) -> SlotRoutes:
    return SlotRoutes(deployment, (EndpointRoute("Http", "http", 80, backends),))


def test_in_rotation_follows_the_last_route_table_of_the_deployments_slot() -> None:
    assert rotation(None) == {"Web_IN_0": False, "Web_IN_1": False, "Worker_IN_0": None}
    listed = ServiceRoutes(
        "shop",
        production=table("d1", Backend("Web_IN_0", "a:1"), Backend("Web_IN_1", "a:2", False)),
    )  # after a swap the deployment's routes are production's
    assert rotation(listed) == {"Web_IN_0": True, "Web_IN_1": False, "Worker_IN_0": None}
    other = ServiceRoutes("shop", staging=table("d0", Backend("Web_IN_1", "a:2")))
    assert rotation(other)["Web_IN_1"] is False, "another deployment's backend of the same name"
