"""The controller's JSON for the load balancer parses with the LB's own schema checker, and a host
agent's observed instances become a HostView (a contract test across the HTTP boundary)."""

from __future__ import annotations

from cumulo.controller.ports import UNKNOWN_VERSION, host_view, route_table_json
from cumulo.controller.records import (
    Backend,
    EndpointRoute,
    RoleVersion,
    ServiceRoutes,
    SlotRoutes,
)
from cumulo.lb.routes import parse_table, table_to_json


def test_route_table_json_is_a_valid_lb_table() -> None:
    routes = ServiceRoutes(
        "svc",
        production=SlotRoutes(
            "d1",
            (
                EndpointRoute(
                    "Http",
                    "http",
                    8080,
                    (
                        Backend("Web_IN_0", "127.0.1.1:20000"),
                        Backend("Web_IN_1", "127.0.1.2:20001"),
                    ),
                ),
            ),
        ),
    )
    raw = route_table_json(routes, version=7)
    table = parse_table(raw)
    back = table_to_json(table)
    assert back["version"] == 7
    http = back["slots"]["production"]["endpoints"]["Http"]
    assert http["publicPort"] == 8080
    assert [(b["instance"], b["address"], b["port"]) for b in http["backends"]] == [
        ("Web_IN_0", "127.0.1.1", 20000),
        ("Web_IN_1", "127.0.1.2", 20001),
    ]
    assert back["slots"]["staging"]["endpoints"] == {}


def test_host_view_from_observed_instances() -> None:
    observed = [
        {
            "key": "d1/Web_IN_0",
            "deployment_id": "d1",
            "instance_id": "Web_IN_0",
            "role": "Web",
            "update_domain": 0,
            "fault_domain": 1,
            "state": "ReadyRole",
            "since": 1700000000.5,
            "endpoints": [
                {"name": "Http", "kind": "input", "address": "127.0.1.1", "local_port": 20000},
                {"name": "Int", "kind": "internal", "address": "127.0.1.1", "local_port": 20001},
            ],
        },
        {"deployment_id": "d1", "instance_id": "Web_IN_1", "role": "Web", "state": "BusyRole"},
    ]
    v = RoleVersion("c", "s")
    view = host_view("host1", 1, observed, seen_at=5.0, versions={"d1/Web_IN_0": v})
    first, second = view.instances
    assert first.ready and first.version == v and first.endpoints == (("Http", "127.0.1.1:20000"),)
    assert first.host == "host1" and first.since == 1700000000.5
    assert not second.ready and second.version == UNKNOWN_VERSION and second.endpoints == ()
