"""The reconcile loop over a real SQLite store and real packages, with in-memory host agents that
keep the host API's contract (scoped idempotent PUT; equal spec = unchanged, settings only =
changed in place, anything else = recycled). Real host agents are exercised end to end elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cumulo.clock import FakeClock
from cumulo.controller.loop import Controller, LoopSettings
from cumulo.controller.management import Management
from cumulo.state.spec import InstanceSpec
from cumulo.storage.store import SqliteStore

from ..api.conftest import build, cscfg  # type: ignore[import-not-found]


class FakeHost:
    """A host agent in memory: instances become Ready at the observation after they start."""

    def __init__(self, name: str, fault_domain: int, clock: FakeClock) -> None:
        self.name = name
        self.fault_domain = fault_domain
        self.clock = clock
        self.instances: dict[str, dict[str, Any]] = {}
        self.down = False
        self.history: list[tuple[str, str]] = []
        self.topologies: list[tuple[str, Mapping[str, Any]]] = []

    async def events(self, since: int) -> list[dict[str, Any]]:
        self._check()
        return [
            {"seq": n + 1, "time": 0.0, "event": f"instance.{what}", "key": key}
            for n, (what, key) in enumerate(self.history)
            if n + 1 > since
        ]

    def _check(self) -> None:
        if self.down:
            from cumulo.errors import TemporaryError

            raise TemporaryError(f"{self.name} is down")

    async def observe(self) -> list[dict[str, Any]]:
        self._check()
        out = []
        for key, inst in sorted(self.instances.items()):
            if inst["state"] == "StartingRole":
                inst["state"], inst["since"] = "ReadyRole", self.clock.wall()
            spec: InstanceSpec = inst["spec"]
            out.append(
                {
                    "key": key,
                    "deployment_id": spec.deployment_id,
                    "instance_id": spec.instance_id,
                    "role": spec.role,
                    "update_domain": spec.update_domain,
                    "fault_domain": spec.fault_domain,
                    "state": inst["state"],
                    "since": inst["since"],
                    "endpoints": [
                        {
                            "name": e.name,
                            "kind": e.kind,
                            "protocol": e.protocol,
                            "address": f"127.0.9.{spec.instance_id[-1]}",
                            "local_port": 30000,
                        }
                        for e in spec.endpoints
                    ],
                }
            )
        return out

    async def apply(
        self, specs: Sequence[Mapping[str, Any]], *, deployment_id: str | None = None
    ) -> dict[str, list[str]]:
        self._check()
        result: dict[str, list[str]] = {
            k: [] for k in ("started", "stopped", "changed", "recycled", "unchanged")
        }
        wanted = {}
        for raw in specs:
            spec = InstanceSpec.from_json(raw)
            wanted[spec.key] = spec
        for key in [
            k for k, v in self.instances.items() if deployment_id in (None, v["spec"].deployment_id)
        ]:
            if key not in wanted:
                del self.instances[key]
                result["stopped"].append(key)
                self.history.append(("stopped", key))
        for key, spec in wanted.items():
            have = self.instances.get(key)
            if have is None:
                self.instances[key] = {
                    "spec": spec,
                    "state": "StartingRole",
                    "since": self.clock.wall(),
                }
                result["started"].append(key)
                self.history.append(("started", key))
            elif have["spec"] == spec:
                result["unchanged"].append(key)
            elif have["spec"].same_except_settings(spec):
                have["spec"] = spec
                result["changed"].append(key)
                self.history.append(("changed", key))
            else:
                self.instances[key] = {
                    "spec": spec,
                    "state": "StartingRole",
                    "since": self.clock.wall(),
                }
                result["recycled"].append(key)
                self.history.append(("recycled", key))
        return result

    async def instance_action(self, deployment_id: str, instance_id: str, action: str) -> None:
        inst = self.instances[f"{deployment_id}/{instance_id}"]
        inst["state"], inst["since"] = "StartingRole", self.clock.wall()
        self.history.append((action, f"{deployment_id}/{instance_id}"))

    async def push_topology(self, deployment_id: str, roles: Mapping[str, Any]) -> None:
        self.topologies.append((deployment_id, roles))

    async def prepare(self, specs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        self._check()
        return [{"role": s["role"], "source": s["approot_source"], "state": "ready"} for s in specs]


class Rig:
    def __init__(self, tmp: Path, hosts: int = 2) -> None:
        self.tmp = tmp
        self.clock = FakeClock()
        self.store = SqliteStore(tmp / "data", clock=self.clock)
        self.m = Management(self.store, clock=self.clock)
        self.hosts = [FakeHost(f"host{n}", n, self.clock) for n in range(hosts)]
        self.controller = self.new_controller()

    def new_controller(self) -> Controller:
        c = Controller(
            self.m,
            self.hosts,
            data_dir=self.tmp / "data",
            clock=self.clock,
            settings=LoopSettings(idle_interval=1.0),
        )
        self.m.observe = c.snapshot
        return c

    def ticks(self, n: int = 1) -> None:
        async def run() -> None:
            for _ in range(n):
                await self.controller.tick()
                self.clock.advance(1.0)

        asyncio.run(run())

    def until_done(self, op_id: str, limit: int = 30) -> str:
        for _ in range(limit):
            self.ticks()
            status = self.store.get_operation(op_id).status.value
            if status != "InProgress":
                return status
        raise AssertionError(f"operation {op_id} still in progress: {self.controller.last_plan}")

    def running(self) -> dict[str, str]:
        return {key: inst["state"] for h in self.hosts for key, inst in sorted(h.instances.items())}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.store.close()


def deploy(rig: Rig, count: int = 2, slot: str = "production") -> str:
    rig.m.create_service("tiny") if not rig.store.list_services() else None
    digest = rig.m.upload_package(build(rig.tmp, "1")).digest
    op = rig.m.create_deployment("tiny", slot, package_digest=digest, configuration=cscfg(count))
    assert rig.until_done(op.id) == "Succeeded"
    return op.deployment_id or ""


def test_a_deployment_starts_spread_over_hosts_and_its_operation_succeeds(rig: Rig) -> None:
    dep = deploy(rig, 4)
    per_host = [sorted(h.instances) for h in rig.hosts]
    assert per_host == [
        [f"{dep}/Worker_IN_0", f"{dep}/Worker_IN_2"],
        [f"{dep}/Worker_IN_1", f"{dep}/Worker_IN_3"],
    ]
    view = rig.m.desired_of(rig.store.get_deployment("tiny", "production"))
    assert view.walk is None
    spec = rig.hosts[0].instances[f"{dep}/Worker_IN_2"]["spec"]
    assert spec.update_domain == 2 and spec.fault_domain == 0
    assert spec.settings == (("Greeting", "hello"),)
    assert Path(spec.approot_source, "worker.py").read_text() == "print('version 1')\n"


def test_scale_out_and_in(rig: Rig) -> None:
    deploy(rig, 2)
    op = rig.m.scale("tiny", "production", "Worker", 3)
    assert rig.until_done(op.id) == "Succeeded"
    assert len(rig.running()) == 3
    op = rig.m.scale("tiny", "production", "Worker", 1)
    assert rig.until_done(op.id) == "Succeeded"
    assert [k.split("/")[1] for k in rig.running()] == ["Worker_IN_0"]


def test_a_setting_change_applies_in_place_domain_by_domain(rig: Rig) -> None:
    dep = deploy(rig, 2)
    op = rig.m.change_configuration("tiny", "production", cscfg(2, greeting="bonjour"))
    assert rig.until_done(op.id) == "Succeeded"
    changed = [e for h in rig.hosts for e in h.history if e[0] == "changed"]
    assert sorted(changed) == [("changed", f"{dep}/Worker_IN_0"), ("changed", f"{dep}/Worker_IN_1")]
    assert not [e for h in rig.hosts for e in h.history if e[0] == "recycled"]


def test_an_auto_upgrade_recycles_one_update_domain_at_a_time(rig: Rig) -> None:
    dep = deploy(rig, 2)
    digest2 = rig.m.upload_package(build(rig.tmp, "2")).digest
    op = rig.m.upgrade("tiny", "production", package_digest=digest2)
    order: list[tuple[str, str]] = []
    for _ in range(30):
        rig.ticks()
        for h in rig.hosts:
            order += [e for e in h.history if e[0] == "recycled" and e not in order]
        if rig.store.get_operation(op.id).status.value != "InProgress":
            break
    assert rig.store.get_operation(op.id).status.value == "Succeeded"
    assert order == [("recycled", f"{dep}/Worker_IN_0"), ("recycled", f"{dep}/Worker_IN_1")]
    for h in rig.hosts:
        for inst in h.instances.values():
            assert (
                Path(inst["spec"].approot_source, "worker.py").read_text() == "print('version 2')\n"
            )


def test_a_controller_restart_restarts_no_instance(rig: Rig) -> None:
    deploy(rig, 3)
    before = [list(h.history) for h in rig.hosts]
    rig.controller = rig.new_controller()  # a new process: empty ledger, same store and hosts
    rig.ticks(5)
    assert [list(h.history) for h in rig.hosts] == before


def test_a_lost_host_has_its_instances_placed_on_another(rig: Rig) -> None:
    dep = deploy(rig, 2)
    rig.hosts[1].down = True
    rig.ticks(15)  # stale after 10 s, lost after 30 s of FakeClock time (1 s per tick)
    assert f"{dep}/Worker_IN_1" not in rig.hosts[0].instances
    rig.ticks(25)
    assert f"{dep}/Worker_IN_1" in rig.hosts[0].instances


def test_delete_stops_every_instance(rig: Rig) -> None:
    deploy(rig, 2)
    op = rig.m.delete_deployment("tiny", "production")
    assert rig.until_done(op.id) == "Succeeded"
    assert rig.running() == {}


def test_reboot_goes_to_the_instances_host(rig: Rig) -> None:
    dep = deploy(rig, 2)
    op = rig.m.instance_action("tiny", "production", "Worker_IN_1", "reboot")
    assert rig.until_done(op.id) == "Succeeded"
    assert ("reboot", f"{dep}/Worker_IN_1") in rig.hosts[1].history


def test_swap_then_routes_follow(rig: Rig) -> None:
    deploy(rig, 1, slot="staging")
    op = rig.m.swap("tiny")
    assert rig.until_done(op.id) == "Succeeded"
    routes = rig.controller.lb_applied["tiny"]
    assert routes.staging is None and routes.production is not None
    assert [b.instance_id for b in routes.production.endpoints[0].backends] == ["Worker_IN_0"]


def test_host_events_reach_the_service_history(rig: Rig) -> None:
    dep = deploy(rig, 2)
    rig.ticks(2)
    events = [(e.name, e.fields.get("instance")) for e in rig.store.list_events("tiny")]
    assert ("instance.started", "Worker_IN_0") in events
    assert ("instance.started", "Worker_IN_1") in events
    started = [e for e in rig.store.list_events("tiny") if e.name == "instance.started"]
    assert len(started) == 2, "each host event is taken once"
    assert {e.deployment_id for e in started} == {dep}


def test_roles_with_internal_endpoints_hear_the_topology(rig: Rig) -> None:
    from cumulo.package.build import build_package

    from ..api import conftest as api_conftest  # type: ignore[import-not-found]

    src = rig.tmp / "internal"
    (src / "Worker").mkdir(parents=True)
    csdef = api_conftest.CSDEF.replace(
        '<InputEndpoint name="Tcp" protocol="tcp" port="9000" />',
        '<InputEndpoint name="Tcp" protocol="tcp" port="9000" />\n'
        '      <InternalEndpoint name="Peer" protocol="tcp" port="7000" />',
    )
    (src / "ServiceDefinition.csdef").write_text(csdef)
    (src / "ServiceConfiguration.cscfg").write_text(cscfg(2))
    (src / "Worker" / "worker.py").write_text("print('hi')\n")
    build_package(src, rig.tmp / "internal.cspkg")
    rig.m.create_service("tiny")
    digest = rig.m.upload_package((rig.tmp / "internal.cspkg").read_bytes()).digest
    op = rig.m.create_deployment(
        "tiny", "production", package_digest=digest, configuration=cscfg(2)
    )
    assert rig.until_done(op.id) == "Succeeded"
    rig.ticks(2)
    last = rig.hosts[0].topologies[-1][1]
    assert [i["id"] for i in last["Worker"]] == ["Worker_IN_0", "Worker_IN_1"]
    assert last["Worker"][1]["endpoints"] == {
        "Peer": {"protocol": "tcp", "address": "127.0.9.1", "port": 30000}
    }
    pushes = len(rig.hosts[0].topologies)
    rig.ticks(3)
    assert len(rig.hosts[0].topologies) == pushes, "pushed only when it changes"
    op = rig.m.scale("tiny", "production", "Worker", 3)
    assert rig.until_done(op.id) == "Succeeded"
    rig.ticks(2)
    assert [i["id"] for i in rig.hosts[1].topologies[-1][1]["Worker"]] == [
        "Worker_IN_0",
        "Worker_IN_1",
        "Worker_IN_2",
    ]


def test_a_manual_walk_then_rollback(rig: Rig) -> None:
    dep = deploy(rig, 4)
    digest2 = rig.m.upload_package(build(rig.tmp, "2")).digest
    op = rig.m.upgrade("tiny", "production", package_digest=digest2, mode="manual")
    assert rig.until_done(op.id) == "Succeeded"  # Manual: accepted is done
    rig.ticks(3)
    assert not [e for h in rig.hosts for e in h.history if e[0] == "recycled"]
    walk = rig.m.walk("tiny", "production", 0)
    assert rig.until_done(walk.id) == "Succeeded"
    recycled = sorted(e[1] for h in rig.hosts for e in h.history if e[0] == "recycled")
    assert recycled == [f"{dep}/Worker_IN_0"]  # 4 instances over 5 update domains
    back = rig.m.rollback("tiny", "production")
    assert rig.until_done(back.id) == "Succeeded"
    again = sorted(e[1] for h in rig.hosts for e in h.history if e[0] == "recycled")
    assert again == sorted(recycled * 2), "only the updated instances go back"
    for h in rig.hosts:
        for inst in h.instances.values():
            assert (
                Path(inst["spec"].approot_source, "worker.py").read_text() == "print('version 1')\n"
            )


def test_a_controller_killed_between_its_intent_and_the_put_completes_it(rig: Rig) -> None:
    dep = deploy(rig, 2)
    digest2 = rig.m.upload_package(build(rig.tmp, "2")).digest
    op = rig.m.upgrade("tiny", "production", package_digest=digest2)
    record = rig.store.get_deployment("tiny", "production")
    new = rig.m.desired_of(record).roles[0].version
    # The dead controller wrote "Worker_IN_0 gets the new version", then died before the PUT.
    rig.store.set_controller_state({f"ledger/{dep}/Worker_IN_0": f"{new.code}.{new.settings}"})
    rig.controller = rig.new_controller()
    rig.ticks(1)
    assert ("recycled", f"{dep}/Worker_IN_0") in rig.hosts[0].history
    assert ("recycled", f"{dep}/Worker_IN_1") not in rig.hosts[1].history  # UD 1: not yet
    assert rig.until_done(op.id) == "Succeeded"
    assert ("recycled", f"{dep}/Worker_IN_1") in rig.hosts[1].history


def test_a_swap_recycles_nothing_even_at_the_next_change(rig: Rig) -> None:
    dep = deploy(rig, 2, slot="staging")
    op = rig.m.swap("tiny")
    assert rig.until_done(op.id) == "Succeeded"
    op = rig.m.scale("tiny", "production", "Worker", 3)
    assert rig.until_done(op.id) == "Succeeded"
    assert not [e for h in rig.hosts for e in h.history if e[0] == "recycled"]
    assert f"{dep}/Worker_IN_2" in {k for h in rig.hosts for k in h.instances}


def test_suspend_stops_every_instance_and_start_brings_them_back(rig: Rig) -> None:
    from cumulo.controller.views import deployment_view

    deploy(rig, 2)
    op = rig.m.update_status("tiny", "production", "Suspended")
    assert rig.until_done(op.id) == "Succeeded"
    assert rig.running() == {}
    record = rig.store.get_deployment("tiny", "production")
    view = deployment_view(record, rig.m.desired_of(record), rig.controller.snapshot())
    assert view["status"] == "Suspended"
    assert {i["status"] for i in view["instances"]} == {"StoppedVM"}
    op = rig.m.update_status("tiny", "production", "Running")
    assert rig.until_done(op.id) == "Succeeded"
    assert set(rig.running().values()) == {"ReadyRole"} and len(rig.running()) == 2
