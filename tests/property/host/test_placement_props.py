"""Hypothesis: addresses and ports of many instances on one host never clash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cumulo.host.addresses import allocate_address, assign_ports, base_for_host
from cumulo.host.environment import env_name
from cumulo.state.spec import EndpointSpec

port_kinds = st.lists(st.one_of(st.just("*"), st.integers(1024, 1100)), min_size=0, max_size=6)


@given(st.lists(port_kinds, min_size=1, max_size=12), st.sampled_from(["host0", "host3", "n-x"]))
def test_each_instance_gets_its_own_address_and_distinct_ports(
    instances: list[list[object]], host: str
) -> None:
    used: set[str] = set()
    free = iter(range(20000, 30000))
    for i, kinds in enumerate(instances):
        address = allocate_address(used, base_for_host(host))
        assert address not in used
        used.add(address)
        # fixed local ports may repeat across instances (distinct addresses), never within one
        seen: set[object] = set()
        unique = [k for k in kinds if k == "*" or not (k in seen or seen.add(k))]
        eps = [
            EndpointSpec(f"e{j}", "input", "tcp", 80 + j, k)  # type: ignore[arg-type]
            for j, k in enumerate(unique)
        ]
        ports = assign_ports(f"d/R_IN_{i}", eps, lambda: next(free))
        assert len(set(ports.values())) == len(eps)
        for ep in eps:
            if ep.local_port != "*":
                assert ports[ep.name] == ep.local_port


@given(st.text(min_size=1, max_size=20))
def test_endpoint_names_become_valid_variable_names(name: str) -> None:
    out = env_name(name)
    assert out and all(c.isupper() or c.isdigit() or c == "_" for c in out)
    assert len(out) == len(name.upper())
