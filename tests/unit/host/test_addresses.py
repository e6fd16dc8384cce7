"""Instance addresses and local ports."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.errors import InputError
from cumulo.host.addresses import address_at, allocate_address, assign_ports, base_for_host
from cumulo.state.spec import EndpointSpec


def test_addresses_skip_network_and_broadcast_bytes() -> None:
    assert address_at("127.1.0.0", 0) == "127.1.0.1"
    assert address_at("127.1.0.0", 253) == "127.1.0.254"
    assert address_at("127.1.0.0", 254) == "127.1.1.1"
    assert allocate_address({"127.1.0.1", "127.1.0.2"}) == "127.1.0.3"
    assert allocate_address({"127.1.0.2"}) == "127.1.0.1"


@given(st.sets(st.integers(0, 3000), max_size=200))
def test_allocation_is_the_first_free_loopback_address(used_idx: set[int]) -> None:
    used = {address_at("127.1.0.0", i) for i in used_idx}
    got = allocate_address(used)
    assert got not in used and got.startswith("127.")
    first_free = next(i for i in itertools.count() if i not in used_idx)
    assert got == address_at("127.1.0.0", first_free)


def test_fixed_wildcard_and_default_ports() -> None:
    free = iter([50001, 50002])
    eps = [
        EndpointSpec("http", "input", "http", 80, 8080),
        EndpointSpec("any", "input", "tcp", 81, "*"),
        EndpointSpec("plain", "input", "tcp", 82),
        EndpointSpec("peer", "internal", "tcp", None, "*"),
    ]
    ports = assign_ports("d/W_IN_0", eps, lambda: next(free))
    assert ports == {"http": 8080, "plain": 82, "any": 50001, "peer": 50002}


def test_previous_ports_are_kept_and_clashes_refused() -> None:
    eps = [EndpointSpec("any", "input", "tcp", 81, "*")]
    assert assign_ports("k", eps, lambda: 1, {"any": 40000}) == {"any": 40000}
    clash = [EndpointSpec("a", "input", "tcp", 80), EndpointSpec("b", "input", "tcp", 81, 80)]
    with pytest.raises(InputError, match="Endpoints 'a' and 'b' of instance 'k' both use local"):
        assign_ports("k", clash, lambda: 1)


@given(st.lists(st.sampled_from(["*", None]), min_size=1, max_size=8))
def test_picked_ports_never_collide_with_fixed_ones(kinds: list[str | None]) -> None:
    eps = [EndpointSpec(f"e{i}", "input", "tcp", 1000 + i, k) for i, k in enumerate(kinds)]
    picks = iter(range(1000, 2000))  # the kernel may hand out a port already fixed here
    ports = assign_ports("k", eps, lambda: next(picks))
    assert len(set(ports.values())) == len(eps)


def test_hosts_get_distinct_address_bases() -> None:
    assert base_for_host("host0") == "127.1.0.0"
    assert base_for_host("host7") == "127.8.0.0"
    bases = {base_for_host(f"node-{name}") for name in ("a", "b", "c")}
    assert all(b.startswith("127.") for b in bases)
    assert base_for_host("x") == base_for_host("x")
