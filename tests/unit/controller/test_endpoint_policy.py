"""An endpoint's load-balancing policy (probe, distribution, idle timeout, ACLs,
ignoreRoleInstanceStatus) travels from the .csdef/.cscfg through the store to the LB's table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cumulo.controller import desired as desired_mod
from cumulo.controller.plan import SetRoutes
from cumulo.controller.ports import route_table_json
from cumulo.controller.reconcile import reconcile
from cumulo.controller.records import (
    AclRule,
    Backend,
    Desired,
    DesiredDeployment,
    DesiredRole,
    EndpointRoute,
    HostView,
    InputEndpoint,
    Observed,
    ProbeRule,
    RoleVersion,
    ServiceRoutes,
    Slot,
    SlotRoutes,
)
from cumulo.controller.testing import settle
from cumulo.lb.routes import parse_table
from cumulo.model import load_service

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "services"
NOW = 1_000.0
V1 = RoleVersion("code1", "set1")


def test_policy_comes_from_the_definition_and_the_configuration() -> None:
    service = load_service(FIXTURES / "network-config")
    role = service.definition.role("Api")
    assert role is not None
    public = desired_mod.input_endpoints(service.definition, service.configuration, role)[0]
    assert public.name == "Public"
    assert public.distribution == "sourceIP"
    assert public.idle_timeout == 15 * 60
    assert public.ignore_status is True
    assert public.acl == (
        AclRule(100, "permit", "10.0.0.0/8", "office"),
        AclRule(200, "deny", "0.0.0.0/0", ""),
    )

    web = load_service(FIXTURES / "python-web")
    http = next(
        e
        for r in web.definition.roles
        for e in desired_mod.input_endpoints(web.definition, web.configuration, r)
        if e.name == "HttpIn"
    )
    assert http.probe == ProbeRule("http", "/health", None, 5.0, 11.0)
    assert http.distribution == "fiveTuple" and http.idle_timeout == 240.0 and http.acl == ()


def test_policy_survives_the_store_document() -> None:
    endpoint = InputEndpoint(
        "Http",
        "http",
        80,
        distribution="sourceIPProtocol",
        idle_timeout=600.0,
        ignore_status=True,
        probe=ProbeRule("tcp", None, 8080, 5.0, 11.0),
        acl=(AclRule(1, "deny", "127.0.0.2/32", "no"),),
    )
    dep = DesiredDeployment(
        "d1", "svc", Slot.PRODUCTION, True, 5, (DesiredRole("Web", (0,), V1, (endpoint,)),)
    )
    doc = desired_mod.to_document(dep)
    back = desired_mod.from_document(
        doc, deployment_id="d1", service="svc", slot="production", revision=1
    )
    assert back.roles[0].input_endpoints == (endpoint,)
    # A document written before policies existed reads with the defaults.
    doc["roles"][0]["input_endpoints"] = [{"name": "Http", "protocol": "http", "port": 80}]
    old = desired_mod.from_document(
        doc, deployment_id="d1", service="svc", slot="production", revision=1
    )
    assert old.roles[0].input_endpoints == (InputEndpoint("Http", "http", 80),)


def _converged(endpoint: InputEndpoint) -> tuple[Desired, Observed]:
    role = DesiredRole("Web", (0, 1), V1, (endpoint,))
    desired = Desired((DesiredDeployment("d1", "svc", Slot.PRODUCTION, True, 5, (role,)),))
    observed = Observed(tuple(HostView(f"h{n}", n, NOW) for n in range(2)), 0.0, routes={})
    for _ in range(10):
        plan = reconcile(desired, observed, now=NOW)
        if plan.empty:
            return desired, observed
        desired, observed = settle(plan, desired, observed, now=NOW)
    raise AssertionError("did not converge")


def _with_busy(observed: Observed, instance: str) -> Observed:
    hosts = tuple(
        replace(
            h,
            instances=tuple(
                replace(i, status="BusyRole") if i.instance_id == instance else i
                for i in h.instances
            ),
        )
        for h in observed.hosts
    )
    return replace(observed, hosts=hosts)


def _backends(plan_routes: SetRoutes) -> list[tuple[str, bool]]:
    slot = plan_routes.routes.production
    assert slot is not None
    return [(b.instance_id, b.routable) for b in slot.endpoints[0].backends]


def test_default_probe_lists_only_ready_instances() -> None:
    desired, observed = _converged(InputEndpoint("Http", "http", 80))
    plan = reconcile(desired, _with_busy(observed, "Web_IN_1"), now=NOW + 1)
    (routes,) = plan.of_type(SetRoutes)
    assert _backends(routes) == [("Web_IN_0", True)]


def test_a_custom_probe_gets_unready_instances_marked_unroutable() -> None:
    probe = ProbeRule("http", "/health", None, 5.0, 11.0)
    desired, observed = _converged(InputEndpoint("Http", "http", 80, probe=probe))
    plan = reconcile(desired, _with_busy(observed, "Web_IN_1"), now=NOW + 1)
    (routes,) = plan.of_type(SetRoutes)
    assert _backends(routes) == [("Web_IN_0", True), ("Web_IN_1", False)]


def test_the_lb_accepts_the_policy_it_is_sent() -> None:
    endpoint = InputEndpoint(
        "Http",
        "http",
        80,
        distribution="sourceIP",
        idle_timeout=900.0,
        ignore_status=True,
        probe=ProbeRule("http", "/health", None, 5.0, 11.0),
        acl=(AclRule(100, "permit", "10.0.0.0/8", "office"),),
    )
    backends = (
        Backend("Web_IN_0", "127.0.1.1:20000", True),
        Backend("Web_IN_1", "127.0.1.2:20000", False),
    )
    routes = ServiceRoutes(
        "svc", production=SlotRoutes("d1", (EndpointRoute("Http", "http", 80, backends, endpoint),))
    )
    table = parse_table(route_table_json(routes, version=3))
    lb_endpoint = table.slot("production").endpoints["Http"]
    assert lb_endpoint.distribution == "sourceIP"
    assert lb_endpoint.idle_timeout == 900.0
    assert lb_endpoint.ignore_role_instance_status is True
    assert lb_endpoint.probe is not None and lb_endpoint.probe.path == "/health"
    assert [(r.order, r.action, r.remote_subnet) for r in lb_endpoint.acl] == [
        (100, "permit", "10.0.0.0/8")
    ]
    assert [(b.instance, b.routable) for b in lb_endpoint.backends] == [
        ("Web_IN_0", True),
        ("Web_IN_1", False),
    ]
