"""Hypothesis properties of the load balancer's pure cores (route choice, ACLs, drains)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.lb.acl import compile_acl
from cumulo.lb.balance import DISTRIBUTIONS_HASHED, Flow, choose, is_eligible
from cumulo.lb.drain import DrainBook
from cumulo.lb.routes import AclRule, Backend, Endpoint

ips = st.ip_addresses(v=4).map(str)
flows = st.builds(
    Flow,
    src_ip=ips,
    src_port=st.integers(1, 65535),
    dst_ip=ips,
    dst_port=st.integers(1, 65535),
    protocol=st.sampled_from(["tcp", "udp"]),
)
backends = st.lists(
    st.builds(
        Backend,
        instance=st.sampled_from([f"Web_IN_{i}" for i in range(6)]),
        address=st.just("127.0.0.1"),
        port=st.integers(1024, 1040),
        routable=st.booleans(),
        ignore_role_instance_status=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda b: b.key,
)
hashed = st.sampled_from(DISTRIBUTIONS_HASHED)


@given(hashed, backends, flows, st.randoms(use_true_random=False))
def test_a_flow_maps_to_the_same_backend_while_the_set_is_unchanged(dist, pool, flow, rnd) -> None:
    first = choose(dist, pool, flow)
    shuffled = list(pool)
    rnd.shuffle(shuffled)
    assert choose(dist, shuffled, flow) == first
    assert (first is None) == (not pool)
    assert first is None or first in pool


@given(hashed, backends, flows)
def test_only_the_flows_of_a_departing_backend_move(dist, pool, flow) -> None:
    chosen = choose(dist, pool, flow)
    for gone in pool:
        if gone != chosen:
            assert choose(dist, [b for b in pool if b != gone], flow) == chosen


@given(
    st.sampled_from(
        ["fiveTuple", "sourceIP", "sourceIPProtocol", "roundRobin", "leastConnections"]
    ),
    backends,
    flows,
    st.booleans(),
    st.integers(0, 100),
)
def test_backends_out_of_rotation_never_get_new_connections(dist, pool, flow, ignore, turn) -> None:
    ep = Endpoint(
        "Http", 80, distribution=dist, ignore_role_instance_status=ignore, backends=tuple(pool)
    )
    eligible = [b for b in pool if is_eligible(ep, b, None)]
    active = {b.key: b.port % 3 for b in pool}
    chosen = choose(dist, eligible, flow, turn=turn, active=active)
    if chosen is not None:
        assert chosen.routable or chosen.ignore_role_instance_status or ignore
    else:
        assert not eligible


rules = st.lists(
    st.builds(
        AclRule,
        order=st.integers(0, 1000),
        action=st.sampled_from(["permit", "deny"]),
        remote_subnet=st.builds(
            lambda ip, plen: str(ipaddress.IPv4Network(f"{ip}/{plen}", strict=False)),
            ips,
            st.integers(0, 32),
        ),
    ),
    max_size=6,
    unique_by=lambda r: r.order,
)


@given(rules, ips)
def test_acl_matches_a_reference_evaluation(acl_rules, remote) -> None:
    compiled = compile_acl(acl_rules)
    addr = ipaddress.IPv4Address(remote)
    expected = None
    for rule in sorted(acl_rules, key=lambda r: r.order):
        if addr in ipaddress.IPv4Network(rule.remote_subnet):
            expected = rule.action == "permit"
            break
    if expected is None:
        expected = not any(r.action == "permit" for r in acl_rules)
    assert (compiled is None or compiled.allows(remote)) == expected


ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 3), st.integers(0, 20)),
        st.tuples(st.just("close"), st.integers(0, 3), st.integers(0, 20)),
        st.tuples(st.just("rotation"), st.frozensets(st.integers(0, 3))),
        st.tuples(st.just("advance"), st.floats(0, 10)),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(ops, st.floats(0.5, 20))
def test_drain_closes_exactly_the_overdue_connections(script, timeout) -> None:
    book = DrainBook()
    now = 0.0
    rotation: frozenset[int] = frozenset(range(4))
    open_conns: dict[int, set[tuple[int, int]]] = {}
    left_at: dict[int, float] = {}  # backend -> when it was first seen out of rotation with conns
    for op in script:
        if op[0] == "open":
            _, key, n = op
            conn = (key, n)  # a connection belongs to one backend
            book.opened(key, conn)
            open_conns.setdefault(key, set()).add(conn)
        elif op[0] == "close":
            _, key, n = op
            conn = (key, n)
            book.closed(key, conn)
            open_conns.get(key, set()).discard(conn)
            if not open_conns.get(key):
                open_conns.pop(key, None)
                left_at.pop(key, None)
        elif op[0] == "rotation":
            rotation = op[1]
            book.update(rotation, now, timeout)
            for key in list(left_at):
                if key in rotation:
                    del left_at[key]
            for key in open_conns:
                if key not in rotation and key not in left_at:
                    left_at[key] = now
        else:
            now += op[1]
        expired = set(book.expired(now))
        overdue = {
            c
            for key, since in left_at.items()
            if now >= since + timeout
            for c in open_conns.get(key, ())
        }
        assert expired == overdue
        for key in rotation:
            assert not (set(open_conns.get(key, ())) & expired)


@settings(max_examples=150)
@given(
    st.sampled_from(
        ["fiveTuple", "sourceIP", "sourceIPProtocol", "roundRobin", "leastConnections"]
    ),
    backends,
    flows,
    st.booleans(),
    st.lists(st.integers(0, 7), max_size=3),
)
def test_the_lb_routes_only_to_backends_in_rotation(dist, pool, flow, fail_some, tried_idx) -> None:
    """Through the real route object: with passive failures and retries (``tried``), a pick is
    always in rotation, never one already tried, and a flow keeps its pick while nothing changes."""
    from cumulo.clock import FakeClock
    from cumulo.lb.server import LoadBalancer

    lb = LoadBalancer(clock=FakeClock())
    ep = Endpoint("Http", 80, distribution=dist, backends=tuple(pool))
    route = lb._route_for("production", ep)
    lb.in_rotation = set(route.runtime)
    if fail_some and route.candidates:
        route.connect_failed(route.runtime[route.candidates[0].key], retried=False)
    eligible = {b.key for b in pool if b.routable or b.ignore_role_instance_status}
    tried = [route.runtime[route.candidates[i].key] for i in tried_idx if i < len(route.candidates)]
    first = route.pick(flow, tried or None)
    if first is None:
        assert not (eligible - {t.key for t in tried})
        return
    assert first.key in eligible
    assert first not in tried
    if dist in DISTRIBUTIONS_HASHED:
        assert route.pick(flow, tried or None) is first
