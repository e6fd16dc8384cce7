from __future__ import annotations

from cumulo.lb.acl import compile_acl
from cumulo.lb.balance import Flow, choose, is_eligible
from cumulo.lb.drain import DrainBook
from cumulo.lb.probes import ProbeState
from cumulo.lb.routes import AclRule, Backend, Endpoint, Probe

B = [Backend(f"W_IN_{i}", "127.0.0.1", 20000 + i) for i in range(3)]
FLOW = Flow("10.0.0.1", 5555, "127.0.0.1", 80)


def test_no_rules_allow_everyone() -> None:
    assert compile_acl([]) is None


def test_first_matching_rule_decides_and_permit_lists_deny_the_rest() -> None:
    acl = compile_acl(
        [
            AclRule(2, "permit", "10.0.0.0/8"),
            AclRule(1, "deny", "10.1.0.0/16"),
        ]
    )
    assert acl is not None
    assert acl.allows("10.2.3.4")
    assert not acl.allows("10.1.2.3")  # order 1 is tried first
    assert not acl.allows("192.168.1.1")  # a permit list denies the rest


def test_deny_only_lists_allow_the_rest() -> None:
    acl = compile_acl([AclRule(1, "deny", "127.0.0.0/8")])
    assert acl is not None
    assert not acl.allows("127.0.0.1")
    assert acl.allows("192.168.1.1")


def test_eligibility_default_probe_and_ignore_status() -> None:
    ep = Endpoint("Http", 80)
    down = Backend("W_IN_0", "127.0.0.1", 1, routable=False)
    assert not is_eligible(ep, down, None)
    assert is_eligible(Endpoint("Http", 80, ignore_role_instance_status=True), down, None)
    assert is_eligible(
        ep, Backend("W", "127.0.0.1", 1, routable=False, ignore_role_instance_status=True), None
    )


def test_custom_probe_decides_alone() -> None:
    ep = Endpoint("Http", 80, probe=Probe("tcp"))
    assert not is_eligible(ep, B[0], None)
    assert not is_eligible(ep, B[0], False)
    assert is_eligible(ep, Backend("W", "127.0.0.1", 1, routable=False), True)


def test_round_robin_and_least_connections() -> None:
    assert [choose("roundRobin", B, FLOW, turn=t).port for t in range(4)] == [
        20000,
        20001,
        20002,
        20000,
    ]
    active = {B[0].key: 3, B[1].key: 1, B[2].key: 2}
    assert choose("leastConnections", B, FLOW, active=active) == B[1]
    assert choose("fiveTuple", [], FLOW) is None


def test_source_ip_ignores_the_source_port() -> None:
    picks = {choose("sourceIP", B, FLOW._replace(src_port=p)) for p in range(1000, 1100)}
    assert len(picks) == 1
    spread = {choose("fiveTuple", B, FLOW._replace(src_port=p)) for p in range(1000, 1100)}
    assert len(spread) == 3


def test_drain_deadline_and_expiry() -> None:
    book = DrainBook()
    book.opened("a", 1)
    book.opened("a", 2)
    book.opened("b", 3)
    book.update({"b"}, now=10.0, timeout=5.0)
    assert book.draining() == {"a": 15.0}
    book.update({"b"}, now=12.0, timeout=5.0)  # a later update keeps the first deadline
    assert book.expired(14.9) == []
    assert sorted(book.expired(15.0)) == [1, 2]  # type: ignore[type-var]
    book.closed("a", 1)
    book.closed("a", 2)
    assert book.draining() == {}


def test_probe_state_up_after_one_success_down_after_timeout() -> None:
    state = ProbeState()
    assert not state.is_up(0.0, 31.0)
    state = state.record(True, 100.0)
    assert state.is_up(100.0, 31.0)
    state = state.record(False, 115.0)
    assert state.is_up(130.9, 31.0)
    assert not state.is_up(131.0, 31.0)
