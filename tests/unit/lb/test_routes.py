from __future__ import annotations

import pytest

from cumulo.lb import routes
from cumulo.lb.routes import RouteTableError, parse_table, swapped, table_to_json, with_routable


def _table() -> dict:
    return {
        "version": 3,
        "drainTimeoutSeconds": 5,
        "slots": {
            "production": {
                "deployment": "d-prod",
                "endpoints": {
                    "Http": {
                        "publicPort": 80,
                        "protocol": "http",
                        "distribution": "sourceIP",
                        "acl": [
                            {"order": 20, "action": "deny", "remoteSubnet": "10.0.0.0/8"},
                            {"order": 10, "action": "permit", "remoteSubnet": "10.1.0.0/16"},
                        ],
                        "probe": {"protocol": "http", "path": "/health", "intervalSeconds": 5},
                        "backends": [
                            {"instance": "Web_IN_0", "address": "127.0.0.1", "port": 20000},
                            {"instance": "Web_IN_1", "port": 20001, "routable": False},
                        ],
                    }
                },
                "instanceInputEndpoints": {
                    "Rdp": {
                        "instances": [
                            {"instance": "Web_IN_0", "publicPort": 10100, "port": 3389},
                            {"instance": "Web_IN_1", "publicPort": 10101, "port": 3390},
                        ]
                    }
                },
            },
            "staging": {"deployment": "d-stag", "endpoints": {}},
        },
    }


def test_a_table_parses_with_defaults() -> None:
    table = parse_table(_table())
    prod = table.slot("production")
    assert prod.address == "127.0.0.1"
    assert table.slot("staging").address == "127.0.0.2"
    http = prod.endpoints["Http"]
    assert [r.order for r in http.acl] == [10, 20]
    assert http.idle_timeout == routes.DEFAULT_IDLE_TIMEOUT
    assert http.probe is not None and http.probe.timeout == 31.0 and http.probe.interval == 5.0
    assert http.backends[1].address == "127.0.0.1" and not http.backends[1].routable
    assert [p.public_port for p in prod.instance_endpoints["Rdp"].instances] == [10100, 10101]


def test_json_round_trip() -> None:
    table = parse_table(_table())
    assert parse_table(table_to_json(table)) == table


def test_every_problem_is_reported_with_its_path() -> None:
    raw = _table()
    ep = raw["slots"]["production"]["endpoints"]["Http"]
    ep["publicPort"] = 70000
    ep["distribution"] = "random"
    ep["acl"][0]["remoteSubnet"] = "not-a-subnet"
    ep["backends"][0]["address"] = "::1"
    raw["slots"]["blue"] = {}
    with pytest.raises(RouteTableError) as info:
        parse_table(raw)
    text = str(info.value)
    assert "routes.slots.production.endpoints.Http.publicPort: 70000 is not a port" in text
    assert "distribution: 'random' is not one of" in text
    assert "acl[0].remoteSubnet: 'not-a-subnet' is not an IPv4 subnet" in text
    assert "backends[0].address: '::1' is not an IPv4 address." in text
    assert "routes.slots.blue: unknown slot" in text
    assert len(info.value.problems) == 5


def test_udp_is_refused_with_a_sentence() -> None:
    raw = _table()
    raw["slots"]["production"]["endpoints"]["Http"]["protocol"] = "udp"
    with pytest.raises(RouteTableError, match="protocol 'udp' is not supported"):
        parse_table(raw)


def test_http_probe_needs_a_path_and_ports_are_unique() -> None:
    raw = _table()
    raw["slots"]["production"]["endpoints"]["Http"]["probe"] = {"protocol": "http"}
    raw["slots"]["production"]["instanceInputEndpoints"]["Rdp"]["instances"][1]["publicPort"] = 80
    with pytest.raises(RouteTableError) as info:
        parse_table(raw)
    assert "an http probe needs a path" in str(info.value)
    assert "public port(s) 80 used by more than one endpoint" in str(info.value)


def test_not_an_object() -> None:
    with pytest.raises(RouteTableError, match="routes: expected a JSON object, got"):
        parse_table([1, 2])


def test_swap_exchanges_contents_and_keeps_addresses() -> None:
    table = parse_table(_table())
    after = swapped(table)
    assert after.version == 4
    assert after.slot("production").deployment == "d-stag"
    assert after.slot("staging").deployment == "d-prod"
    assert after.slot("production").address == "127.0.0.1"
    assert after.slot("staging").address == "127.0.0.2"
    assert swapped(after, version=10).slot("production") == table.slot("production")


def test_with_routable_marks_one_instance_everywhere() -> None:
    table = with_routable(parse_table(_table()), "Web_IN_1", True)
    assert all(b.routable for b in table.slot("production").endpoints["Http"].backends)
    assert table.version == 4


def test_internal_endpoints_are_never_put_on_a_vip() -> None:
    raw = _table()
    raw["slots"]["production"]["endpoints"]["Http"]["kind"] = "internal"
    with pytest.raises(RouteTableError, match="only input endpoints go on a VIP"):
        parse_table(raw)
