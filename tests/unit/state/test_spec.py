"""InstanceSpec: exact JSON round trip and a sentence for a bad field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.state.spec import (
    EndpointSpec,
    EnvVarSpec,
    InstanceSpec,
    LimitsSpec,
    LocalResourceSpec,
    ProbeSpec,
    ProgramEntryPointSpec,
    SiteSpec,
    StartupTaskSpec,
)

names = st.text("abcXYZ_1", min_size=1, max_size=8)
endpoints = st.builds(
    EndpointSpec,
    name=names,
    kind=st.sampled_from(["input", "internal", "instance_input"]),
    protocol=st.sampled_from(["http", "tcp"]),
    port=st.none() | st.integers(1, 65535),
    local_port=st.none() | st.just("*") | st.integers(1, 65535),
)
specs = st.builds(
    InstanceSpec,
    deployment_id=names,
    service=names,
    slot=st.sampled_from(["production", "staging"]),
    role=names,
    role_kind=st.sampled_from(["web", "worker"]),
    instance_id=names,
    approot_source=names,
    update_domain=st.integers(0, 19),
    fault_domain=st.integers(0, 2),
    limits=st.builds(LimitsSpec, cores=st.floats(0.25, 16), memory_mb=st.integers(16, 100_000)),
    endpoints=st.lists(endpoints, max_size=3).map(tuple),
    local_resources=st.lists(st.builds(LocalResourceSpec, names), max_size=2).map(tuple),
    environment=st.lists(st.builds(EnvVarSpec, names, st.none() | names), max_size=2).map(tuple),
    startup_tasks=st.lists(
        st.builds(StartupTaskSpec, names, task_type=st.sampled_from(["simple", "background"])),
        max_size=2,
    ).map(tuple),
    entry_point=st.none() | st.builds(ProgramEntryPointSpec, names),
    site=st.none() | st.builds(SiteSpec, names, st.sampled_from(["wsgi", "asgi"]), names),
    settings=st.lists(st.tuples(names, names), max_size=3).map(tuple),
    probes=st.lists(st.builds(ProbeSpec, names, st.sampled_from(["http", "tcp"])), max_size=1).map(
        tuple
    ),
)


@given(specs)
def test_json_round_trip_is_exact(spec: InstanceSpec) -> None:
    assert InstanceSpec.from_json(json.loads(spec.dumps())) == spec


def test_bad_fields_are_named() -> None:
    good = InstanceSpec("d", "s", "production", "Web", "web", "Web_IN_0", "/x").to_json()
    with pytest.raises(ValueError, match=r"spec.role_kind is 'db'; expected one of"):
        InstanceSpec.from_json({**good, "role_kind": "db"})
    with pytest.raises(ValueError, match=r"spec lacks the required field 'role'"):
        InstanceSpec.from_json({k: v for k, v in good.items() if k != "role"})
    with pytest.raises(ValueError, match=r"spec.endpoints\[0\] lacks the required field 'kind'"):
        InstanceSpec.from_json({**good, "endpoints": [{"name": "e", "protocol": "tcp"}]})
    with pytest.raises(ValueError, match=r"unknown field 'colour'"):
        InstanceSpec.from_json({**good, "colour": 1})
    with pytest.raises(ValueError, match=r"spec.update_domain must be int"):
        InstanceSpec.from_json({**good, "update_domain": "1"})


def test_settings_only_difference() -> None:
    a = InstanceSpec("d", "s", "production", "W", "worker", "W_IN_0", "/x", settings=(("a", "1"),))
    b = InstanceSpec("d", "s", "production", "W", "worker", "W_IN_0", "/x", settings=(("a", "2"),))
    assert a != b and a.same_except_settings(b) and a.key == "d/W_IN_0"
