"""Real host agents in-process (or as `cumulo host run`), real role processes, real sockets.

Data directories are made under /tmp with mode 0711 (pytest's own tmp base is 0700, which the
unprivileged role user could not traverse) and removed afterwards, with every process that a
test's instances started killed (by the pids in record.json and the instances' cgroups).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cumulo.host import localdisk, uidpool, users
from cumulo.host.agent import HostAgent
from cumulo.host.settings import HeartbeatSettings, HostSettings, LogSettings, ProbeSettings
from cumulo.host.uidpool import UidRange
from cumulo.state.restart import RestartPolicy
from cumulo.state.spec import InstanceSpec

T = TypeVar("T")

FAST = HostSettings(
    restart=RestartPolicy(base=0.1, cap=0.8, jitter=0.0, reset_after=30.0, cycling_after=3),
    heartbeat=HeartbeatSettings(interval_s=0.2, timeout_s=3.0),
    probes=ProbeSettings(scale=1.0),
    logs=LogSettings(check_interval_s=0.2),
    drain_s=0.0,
)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))  # type: ignore[arg-type]


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def kill_leftovers(data_dir: Path) -> None:
    for record_file in data_dir.glob("instances/*/record.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(record_file.read_text())
            pids = [record.get("main") or {}, *list(record.get("tasks") or [])]
            for item in pids:
                if item.get("pid"):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(item["pid"]), signal.SIGKILL)


def release_users(host_id: str) -> None:
    """Release the instance users that agents of ``host_id`` left (a test that failed)."""
    if os.geteuid() != 0:
        return
    for entry in pwd.getpwall():
        parsed = uidpool.parse_comment(entry.pw_gecos)
        if parsed is not None and parsed[0].startswith(f"{host_id}."):
            users.InstanceUsers(UidRange(), parsed[0], ()).release(parsed[1])


def remove_cgroups(host_id: str) -> None:
    for controller in ("memory", "cpu", "cpuacct", "pids"):
        base = Path("/sys/fs/cgroup") / controller / "cumulo"
        for group in base.glob(f"{host_id}.*"):
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            for _ in range(20):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


@pytest.fixture
def host_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def data_dir(host_id: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="cumulo-host-"))
    os.chmod(d, 0o711)
    try:
        yield d
    finally:
        kill_leftovers(d)
        remove_cgroups(host_id)
        localdisk.release_all_under(d)
        shutil.rmtree(d, ignore_errors=True)
        release_users(host_id)


@contextlib.asynccontextmanager
async def running_agent(
    data_dir: Path, host_id: str, settings: HostSettings = FAST
) -> AsyncIterator[HostAgent]:
    agent = HostAgent(data_dir, settings, host_id=host_id)
    await agent.start()
    try:
        yield agent
        await asyncio.wait_for(agent.stop_all(), 30)
        # every state change the guest agents made was a direct edge of the state machine
        indirect = [e for e in agent.events if e["event"] == "instance.indirect_transition"]
        assert not indirect, indirect
        errors = [e for e in agent.events if e["event"] == "instance.agent_error"]
        assert not errors, errors
        # removed instances leave no cgroup behind
        left = sorted(p.name for p in Path("/sys/fs/cgroup/memory/cumulo").glob(f"{host_id}.*"))
        assert not left, left
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent.stop_all(), 30)
        await agent.close()


def shared(data_dir: Path) -> Path:
    """A directory both the test and a limited role can write (under the 0711 data dir)."""
    d = data_dir / "shared"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o777)
    return d


def write_role(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def spec(source: Path, role: str = "Worker", index: int = 0, **kw: Any) -> InstanceSpec:
    kind = kw.pop("role_kind", "web" if "site" in kw else "worker")
    dep = kw.pop("deployment_id", "dep1")
    return InstanceSpec(
        deployment_id=dep,
        service="svc",
        slot="production",
        role=role,
        role_kind=kind,
        instance_id=f"{role}_IN_{index}",
        approot_source=str(source),
        stop_grace_s=kw.pop("stop_grace_s", 3.0),
        **kw,
    )


def observed(agent: HostAgent, key: str) -> dict[str, Any]:
    return next(o for o in agent.observed() if o["key"] == key)


def state_is(agent: HostAgent, key: str, *states: str) -> bool:
    return any(o["key"] == key and o["state"] in states for o in agent.observed())


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
