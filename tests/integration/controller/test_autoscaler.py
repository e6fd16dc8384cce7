"""The autoscaler edge over a real SQLite store and management operations, with fake host agents
and queue lengths and a FakeClock (sampling, deferral while an operation runs, the scale
operation and its events, a cooldown that survives a restart); and ``QueueLength`` against a real
``cumulo storage serve`` (SharedKey signed by ``storage.azure.auth``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cumulo.clock import FakeClock
from cumulo.controller.autoscaler import (
    Autoscaler,
    QueueLength,
    put_setting,
)
from cumulo.controller.management import Management
from cumulo.errors import NotFoundError, TemporaryError
from cumulo.package.build import build_package
from cumulo.storage.azure.accounts import DEV_ACCOUNT, make_account
from cumulo.storage.store import OperationStatus, SqliteStore

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="tiny" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition">
  <WorkerRole name="Worker" vmsize="Medium">
    <Runtime>
      <EntryPoint>
        <ProgramEntryPoint commandLine="python worker.py" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
  </WorkerRole>
</ServiceDefinition>
"""

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="tiny" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Worker"><Instances count="2" /></Role>
</ServiceConfiguration>
"""

QUEUE_RULE = {
    "metric": "queue",
    "queue": "jobs",
    "timeWindow": "PT10S",
    "operator": ">",
    "threshold": 10,
    "scaleAction": {"direction": "Increase", "value": 1, "cooldown": "PT1M"},
}
CPU_RULE = {
    "metric": "cpu",
    "timeWindow": "PT10S",
    "operator": ">",
    "threshold": 80,
    "scaleAction": {"direction": "Increase", "value": 2, "cooldown": "PT1M"},
}


class FakeHost:
    """A host agent port that reports the instances and CPU counters a test sets."""

    name = "host0"
    fault_domain = 0

    def __init__(self) -> None:
        self.instances: list[dict[str, Any]] = []

    async def observe(self) -> list[dict[str, Any]]:
        return [dict(i) for i in self.instances]


class FakeQueues:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def count(self, account: str, queue: str) -> int:
        if (account, queue) not in self.counts:
            raise NotFoundError(f"Queue {queue!r} does not exist in storage account {account}.")
        return self.counts[(account, queue)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Management, FakeClock, str]]:
    src = tmp_path / "src"
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(CSDEF)
    (src / "ServiceConfiguration.cscfg").write_text(CSCFG)
    (src / "Worker" / "worker.py").write_text("print('hi')\n")
    build_package(src, tmp_path / "tiny.cspkg")
    clock = FakeClock()
    store = SqliteStore(tmp_path / "data", clock=clock)
    m = Management(store, clock=clock)
    m.create_service("tiny")
    digest = m.upload_package((tmp_path / "tiny.cspkg").read_bytes()).digest
    op = m.create_deployment("tiny", "production", package_digest=digest, configuration=CSCFG)
    yield m, clock, op.id
    store.close()


def autoscaler(m: Management, clock: FakeClock, queues: Any = None, host: Any = None) -> Autoscaler:
    return Autoscaler(
        m,
        [host or FakeHost()],
        queues=queues or FakeQueues(),
        clock=clock,  # type: ignore[arg-type]
    )


def events(m: Management, name: str) -> list[Mapping[str, Any]]:
    return [e.fields for e in m.store.list_events("tiny") if e.name == name]


def count(m: Management) -> int:
    role = m.desired_of(m.store.get_deployment("tiny", "production")).role("Worker")
    assert role is not None
    return role.count


def run_ticks(a: Autoscaler, clock: FakeClock, n: int, step: float = 2.0) -> None:
    for _ in range(n):
        asyncio.run(a.tick())
        clock.advance(step)


def test_a_queue_rule_waits_for_the_running_operation_then_scales(
    world: tuple[Management, FakeClock, str],
) -> None:
    m, clock, create_op = world
    queues = FakeQueues()
    queues.counts[(DEV_ACCOUNT, "jobs")] = 25
    put_setting(
        m,
        "tiny",
        "production",
        "Worker",
        {"capacity": {"minimum": 1, "maximum": 5}, "rules": [QUEUE_RULE]},
    )
    a = autoscaler(m, clock, queues)
    run_ticks(a, clock, 8)  # 14 s: the 10 s window is covered, the deployment is still creating
    (deferred,) = events(m, "autoscale.deferred")  # once, not once per tick
    assert deferred["to"] == 3 and "CreateDeployment" in deferred["waiting"]
    assert count(m) == 2

    m.store.finish_operation(create_op, OperationStatus.SUCCEEDED)
    run_ticks(a, clock, 1)
    assert count(m) == 3
    (scaled,) = events(m, "autoscale.scaled")
    assert scaled["rule"] == 0 and scaled["value"] == 25.0 and scaled["from"] == 2
    op = m.store.get_operation(scaled["operation"])
    assert op.kind == "ChangeDeploymentConfiguration" and op.status is OperationStatus.IN_PROGRESS
    m.store.finish_operation(op.id, OperationStatus.SUCCEEDED)

    # A new autoscaler (a controller restart) keeps the cooldown the action started.
    again = autoscaler(m, clock, queues)
    run_ticks(again, clock, 7)
    status = again.status("tiny", "production", "Worker")
    assert status is not None and status["decision"].startswith("Cooling down for")
    assert count(m) == 3
    assert status["last_action"]["operation"] == op.id


def test_cpu_from_the_hosts_counters_over_the_vm_size_cores(
    world: tuple[Management, FakeClock, str],
) -> None:
    m, clock, create_op = world
    m.store.finish_operation(create_op, OperationStatus.SUCCEEDED)
    dep = m.store.get_deployment("tiny", "production")
    host = FakeHost()
    put_setting(
        m,
        "tiny",
        "production",
        "Worker",
        {"capacity": {"minimum": 1, "maximum": 3}, "rules": [CPU_RULE]},
    )
    a = autoscaler(m, clock, host=host)
    used = [0.0, 0.0]
    for _ in range(13):  # a 10 s window, covered
        # Medium has 2 cores: 1.8 and 1.6 CPU seconds per 1 s tick are 90 % and 80 %.
        host.instances = [
            {
                "key": f"{dep.id}/Worker_IN_{n}",
                "deployment_id": dep.id,
                "instance_id": f"Worker_IN_{n}",
                "role": "Worker",
                "usage": {"cpu_seconds": used[n]},
            }
            for n in range(2)
        ]
        asyncio.run(a.tick())
        clock.advance(1.0)
        used = [used[0] + 1.8, used[1] + 1.6]
    status = a.status("tiny", "production", "Worker")
    assert status is not None
    (scaled,) = events(m, "autoscale.scaled")
    assert scaled["metric"] == "cpu" and scaled["value"] == pytest.approx(85.0)
    assert count(m) == 3  # + 2, held at the maximum 3


def test_problems_are_shown_once(world: tuple[Management, FakeClock, str]) -> None:
    m, clock, create_op = world
    m.store.finish_operation(create_op, OperationStatus.SUCCEEDED)
    rule = {**QUEUE_RULE, "queue": "missing"}
    put_setting(
        m,
        "tiny",
        "production",
        "Worker",
        {"capacity": {"minimum": 2, "maximum": 3}, "rules": [rule]},
    )
    a = autoscaler(m, clock)
    run_ticks(a, clock, 7)  # 12 s: the 10 s window was observed, without data
    (problem,) = events(m, "autoscale.problem")
    assert (
        problem["problem"] == "Queue 'missing' does not exist in storage account devstoreaccount1."
    )
    status = a.status("tiny", "production", "Worker")
    assert status is not None and "has no data for its time window" in status["decision"]
    with pytest.raises(NotFoundError, match="Role 'Web' is not in the production deployment"):
        put_setting(m, "tiny", "production", "Web", {"capacity": {"minimum": 1, "maximum": 2}})


# -- real processes ----------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[tuple[str, int]]:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cumulo.cli.main", "storage", "serve"),
            *("--data", str(tmp_path / "storage"), "--blob-port", "0", "--queue-port", "0"),
            *("--table-port", "0", "--ready-file", str(ready)),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "storage did not start"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield info["host"], int(info["queue"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_queue_length_from_the_storage_service(storage: tuple[str, int]) -> None:
    from azure.storage.queue import QueueClient

    host, port = storage
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    queue = QueueClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};"
        f"QueueEndpoint=http://{host}:{port}/{DEV_ACCOUNT};",
        "jobs",
    )
    queue.create_queue()
    for n in range(7):
        queue.send_message(str(n))

    async def check() -> None:
        lengths = QueueLength(lambda: (host, port))
        wrong = QueueLength(lambda: (host, port), {DEV_ACCOUNT: make_account(DEV_ACCOUNT, "a2V5")})
        down = QueueLength(lambda: None)
        try:
            assert await lengths.count(DEV_ACCOUNT, "jobs") == 7
            with pytest.raises(NotFoundError, match="Queue 'nope' does not exist"):
                await lengths.count(DEV_ACCOUNT, "nope")
            with pytest.raises(NotFoundError, match="is not served by this platform"):
                await lengths.count("otheraccount", "jobs")
            with pytest.raises(TemporaryError, match="answered 403"):
                await wrong.count(DEV_ACCOUNT, "jobs")
            with pytest.raises(TemporaryError, match="storage service is not running"):
                await down.count(DEV_ACCOUNT, "jobs")
        finally:
            for q in (lengths, wrong, down):
                await q.close()

    asyncio.run(check())
    queue.clear_messages()
    assert asyncio.run(_count(host, port)) == 0


async def _count(host: str, port: int) -> int:
    lengths = QueueLength(lambda: (host, port))
    try:
        return await lengths.count(DEV_ACCOUNT, "jobs")
    finally:
        await lengths.close()
