"""Instance limits: cgroup files as root where the kernel offers them, rlimits otherwise."""

from __future__ import annotations

import os
import resource
import uuid
from pathlib import Path

import pytest

from cumulo.host import limits
from cumulo.state.spec import LimitsSpec


def test_rlimit_fallback() -> None:
    got = limits.create("x", LimitsSpec("Small", 1, 1792), use_cgroups=False)
    assert got.mode == "rlimit" and got.cgroup_dirs == ()
    assert got.rlimits() == {resource.RLIMIT_AS: (1792 << 20, 1792 << 20)}


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/sys/fs/cgroup/memory", os.W_OK),
    reason="needs root and cgroup v1 memory",
)
def test_cgroup_v1_memory_and_cpu_limits_and_resizing() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    got = limits.create(name, LimitsSpec("Medium", 2, 3584))
    try:
        assert got.mode == "cgroup-v1" and got.rlimits() == {}
        mem = Path(got.cgroup_dirs[0])
        assert int((mem / "memory.limit_in_bytes").read_text()) == 3584 << 20
        cpu = next((Path(d) for d in got.cgroup_dirs if "/cpu/" in d), None)
        if cpu is not None:
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == 200_000
        # a new vmsize on the same instance: grow, then shrink
        bigger = limits.create(name, LimitsSpec("Large", 4, 7168))
        assert int((mem / "memory.limit_in_bytes").read_text()) == 7168 << 20
        smaller = limits.create(name, LimitsSpec("ExtraSmall", 1, 768))
        assert smaller.mode == bigger.mode == "cgroup-v1"
        assert int((mem / "memory.limit_in_bytes").read_text()) == 768 << 20
        assert got.pids() == set() and got.kill_all() == 0
    finally:
        got.remove()
    assert not Path(got.cgroup_dirs[0]).exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/sys/fs/cgroup/memory", os.W_OK),
    reason="needs root and cgroup v1 memory",
)
def test_sweep_removes_only_this_hosts_unused_groups() -> None:
    prefix = f"sweep-{uuid.uuid4().hex[:8]}."
    stale = limits.create(prefix + "d.Web_IN_0", LimitsSpec())
    kept = limits.create(prefix + "d.Web_IN_1", LimitsSpec())
    other = limits.create(f"other-{uuid.uuid4().hex[:8]}.d.Web_IN_0", LimitsSpec())
    try:
        assert limits.sweep(prefix, keep={prefix + "d.Web_IN_1"}) == [prefix + "d.Web_IN_0"]
        assert not Path(stale.cgroup_dirs[0]).exists()
        assert Path(kept.cgroup_dirs[0]).exists() and Path(other.cgroup_dirs[0]).exists()
    finally:
        for group in (stale, kept, other):
            group.remove()
