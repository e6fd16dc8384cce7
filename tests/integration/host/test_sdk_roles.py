"""Role code through cumulo.sdk against a real host agent: environment, events, recycles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cumulo.state.spec import (
    EndpointSpec,
    InstanceSpec,
    LocalResourceSpec,
    ProgramEntryPointSpec,
)

from .conftest import observed, run, running_agent, shared, spec, state_is, wait_for, write_role

ROLE = """
import json, os, pathlib, sys
from cumulo.sdk import RoleEntryPoint, RoleEnvironment, ConfigurationSettingChange

OUT = pathlib.Path(os.environ["OUT"])

def say(*parts):
    print(*parts, flush=True)

class Role(RoleEntryPoint):
    def on_start(self):
        if (OUT / "refuse-start").exists():
            return False
        env = RoleEnvironment
        me = env.current_role_instance
        say("available", env.is_available, env.is_emulated)
        say("deployment", env.deployment_id)
        say("me", me.id, me.role_name, me.update_domain, me.fault_domain)
        ep = me.instance_endpoints["Peer"]
        say("endpoint", ep.address == os.environ["CUMULO_INSTANCE_ADDRESS"], ep.port, ep.protocol)
        say("setting", env.get_configuration_setting_value("Mode"))
        lr = env.get_local_resource("Scratch")
        same = lr.root_path == os.environ["CUMULO_LOCAL_RESOURCE_SCRATCH"]
        say("local", same, lr.maximum_size_in_megabytes)
        try:
            env.get_configuration_setting_value("Nope")
        except Exception as exc:
            say("missing", type(exc).__name__, exc)
        env.changing += self.changing
        env.changed += self.changed
        env.status_check += self.status_check
        env.stopping += lambda e: say("stopping event")
        return True

    def changing(self, e):
        names = [
            c.configuration_setting_name
            for c in e.changes
            if isinstance(c, ConfigurationSettingChange)
        ]
        say("changing", names)
        e.cancel = "Mode" in names

    def changed(self, e):
        other = RoleEnvironment.get_configuration_setting_value("Other")
        say("changed", [type(c).__name__ for c in e.changes], other)
        say("roles", sorted((n, len(r.instances)) for n, r in RoleEnvironment.roles.items()))

    def status_check(self, e):
        if (OUT / "busy").exists():
            e.set_busy()

    def run(self):
        say("run")
        while not self.stop_requested.wait(0.05):
            if (OUT / "recycle").exists():
                (OUT / "recycle").unlink()
                RoleEnvironment.request_recycle()

    def on_stop(self):
        (OUT / "on_stop").write_text("called")
"""


def role_spec(source: Path, out: Path, **settings: str) -> InstanceSpec:
    from cumulo.state.spec import EnvVarSpec

    return spec(
        source,
        entry_point=ProgramEntryPointSpec("python -m cumulo.sdk.run role:Role"),
        endpoints=(EndpointSpec("Peer", "internal", "tcp", None, 9100),),
        local_resources=(LocalResourceSpec("Scratch", 10),),
        environment=(EnvVarSpec("OUT", str(out)),),
        settings=tuple(sorted({"Mode": "a", "Other": "x", **settings}.items())),
    )


def log_has(agent, key: str, text: str) -> bool:  # type: ignore[no-untyped-def]
    return any(text in line for line in observed(agent, key)["log_tail"])


def test_role_environment_and_events(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    out = shared(data_dir)
    source = write_role(tmp_path / "role", {"role.py": ROLE})
    s = role_spec(source, out)

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            await wait_for(lambda: log_has(agent, s.key, "run"))
            tail = "\n".join(observed(agent, s.key)["log_tail"])
            assert "available True False" in tail
            assert "deployment dep1" in tail
            assert "me Worker_IN_0 Worker 0 0" in tail
            assert "endpoint True 9100 tcp" in tail
            assert "setting a" in tail
            assert "local True 10" in tail
            assert "missing RoleEnvironmentError The configuration setting 'Nope'" in tail
            pid = observed(agent, s.key)["pid"]

            # an accepted change is applied online
            other = dataclasses.replace(s, settings=(("Mode", "a"), ("Other", "y")))
            assert (await agent.apply([other]))["changed"] == [s.key]
            await wait_for(
                lambda: log_has(agent, s.key, "changed ['ConfigurationSettingChange'] y")
            )
            assert observed(agent, s.key)["pid"] == pid

            # topology is pushed: peers are visible through their internal endpoints
            peer = {"protocol": "tcp", "address": "127.1.0.99", "port": 9100}
            agent.set_topology(
                "dep1",
                {
                    "Worker": [
                        {
                            "id": "Worker_IN_1",
                            "role": "Worker",
                            "update_domain": 1,
                            "fault_domain": 1,
                            "endpoints": {"Peer": peer},
                        }
                    ]
                },
            )
            await wait_for(lambda: log_has(agent, s.key, "roles [('Worker', 2)]"))

            # set_busy takes the instance out of rotation until the next status check
            (out / "busy").write_text("")
            await wait_for(lambda: state_is(agent, s.key, "BusyRole"), what="BusyRole")
            (out / "busy").unlink()
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), what="ReadyRole again")

            # a cancelled change recycles the instance, which then sees the new value
            cancelled = dataclasses.replace(other, settings=(("Mode", "b"), ("Other", "y")))
            await agent.apply([cancelled])
            await wait_for(lambda: observed(agent, s.key)["pid"] not in (None, pid), what="recycle")
            await wait_for(lambda: log_has(agent, s.key, "setting b"))
            assert (out / "on_stop").read_text() == "called"  # graceful: OnStop ran
            assert any(e["event"] == "instance.change_cancelled" for e in agent.events)
            assert observed(agent, s.key)["consecutive_failures"] == 0

            # request_recycle from role code
            (out / "on_stop").unlink()
            pid = observed(agent, s.key)["pid"]
            (out / "recycle").write_text("")
            await wait_for(lambda: observed(agent, s.key)["pid"] not in (None, pid), what="recycle")
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            assert (out / "on_stop").exists()

            # stopping: Stopping handlers and OnStop run before the process ends
            (out / "on_stop").unlink()
            await agent.apply([])
            await agent.settle()
            assert (out / "on_stop").read_text() == "called"

    run(body())


def test_on_start_false_recycles(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    out = shared(data_dir)
    (out / "refuse-start").write_text("")
    source = write_role(tmp_path / "role", {"role.py": ROLE})
    s = role_spec(source, out)

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(
                lambda: any(
                    e["event"] == "instance.exited" and e["code"] == 1 for e in agent.events
                )
            )
            assert not any(
                e["event"] == "instance.state" and e["new"] == "ReadyRole" for e in agent.events
            )
            (out / "refuse-start").unlink()
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), 15)

    run(body())


def test_snapshot_is_json(tmp_path: Path) -> None:
    # the spec travels as JSON between controller and host; the SDK snapshot too
    s = role_spec(tmp_path, tmp_path)
    assert InstanceSpec.from_json(json.loads(s.dumps())) == s


def test_only_the_instances_processes_may_use_its_agent(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    out = shared(data_dir)
    source = write_role(tmp_path / "role", {"role.py": ROLE})
    s = role_spec(source, out)

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            probe = (
                "from cumulo.sdk import RoleEnvironment as R\n"
                "print(R.is_available)\n"
                "print(R._failed)\n"
            )
            env = {**os.environ, "CUMULO_AGENT_SOCKET": agent.guests[s.key].paths.socket}
            result = await asyncio.to_thread(  # the agent runs in this loop: do not block it
                subprocess.run,
                [sys.executable, "-c", probe],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            lines = result.stdout.splitlines()
            assert lines[0] == "False"
            assert "the agent closed the connection" in lines[1]
            assert any(e["event"] == "sdk.rejected" for e in agent.events)

    run(body())
