"""Custom probes (readiness routes, liveness recycles) and the limited user's reach."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from cumulo.state.spec import EndpointSpec, ProbeSpec, ProgramEntryPointSpec, SiteSpec

from .conftest import observed, run, running_agent, shared, spec, state_is, wait_for, write_role

SITE = {
    "app.py": """
        import os, pathlib
        FLAGS = pathlib.Path(os.environ["FLAGS"])
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/health" and (FLAGS / "sick").exists():
                start_response("503 Service Unavailable", [])
                return [b"sick"]
            start_response("200 OK", [])
            return [b"ok"]
    """
}


def test_custom_http_probe_routes_and_recycles(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    from cumulo.state.spec import EnvVarSpec

    flags = shared(data_dir)
    source = write_role(tmp_path / "web", SITE)
    s = spec(
        source,
        "Web",
        endpoints=(EndpointSpec("Http", "input", "http", 80, "*", probe="health"),),
        probes=(ProbeSpec("health", "http", path="/health", interval_s=0.3, timeout_s=1.5),),
        site=SiteSpec("Web", "wsgi", "app:app"),
        environment=(EnvVarSpec("FLAGS", str(flags)),),
    )

    def routable() -> bool:
        return bool(observed(agent, s.key)["endpoints"][0]["routable"])

    async def body() -> None:
        nonlocal agent
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole") and routable())
            pid = observed(agent, s.key)["pid"]
            (flags / "sick").write_text("")
            await wait_for(lambda: not routable(), 10, "the endpoint to leave rotation")
            assert observed(agent, s.key)["state"] == "ReadyRole"  # readiness does not restart
            assert any(e["event"] == "probe.failed" for e in agent.events)
            # still failing after 2 x timeout: hung -> UnresponsiveRole -> recycled
            await wait_for(
                lambda: any(e["event"] == "instance.unresponsive" for e in agent.events), 10
            )
            (flags / "sick").unlink()
            await wait_for(
                lambda: observed(agent, s.key)["pid"] not in (None, pid) and routable(), 10
            )

    agent = None
    run(body())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a limited user")
def test_unreachable_interpreter_fails_with_a_clear_status(
    tmp_path: Path, data_dir: Path, host_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.access(sys.executable, os.X_OK) and Path(sys.executable).resolve().is_relative_to("/usr"):
        pytest.skip("this interpreter is reachable by everyone")
    monkeypatch.setenv("CUMULO_ROLE_PYTHON", sys.executable)  # under /root (0700) here
    source = write_role(tmp_path / "role", {"w.py": "print('never')\n"})
    limited = spec(source, entry_point=ProgramEntryPointSpec("python w.py"))
    elevated = spec(
        source,
        "Admin",
        entry_point=ProgramEntryPointSpec("python w.py"),
        execution_context="elevated",
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([limited, elevated])
            o = await wait_for(
                lambda: (x := observed(agent, limited.key))["state"] == "FailedStartingRole" and x,
                15,
            )
            assert "the entry point cannot start: Permission denied" in o["detail"]
            assert "crash loop" in o["detail"]
            # elevated runs as the agent's user, which can reach it
            await wait_for(
                lambda: any(
                    e["event"] == "instance.exited" and e["key"] == elevated.key
                    for e in agent.events
                )
            )
            assert "never" in observed(agent, elevated.key)["log_tail"]

    run(body())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a limited user")
def test_data_dir_behind_a_private_parent_is_a_clear_status(tmp_path: Path, host_id: str) -> None:
    # pytest's tmp_path is under a 0700 directory: a limited role could not reach it
    data_dir = tmp_path / "data"
    source = write_role(tmp_path / "role", {"w.py": "print('never')\n"})
    s = spec(source, entry_point=ProgramEntryPointSpec("python w.py"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            o = await wait_for(
                lambda: (x := observed(agent, s.key))["state"] == "FailedStartingRole" and x, 15
            )
            assert "cannot be reached by the instance's user 'cumulo-i" in o["detail"]
            assert "is not traversable by others" in o["detail"]

    run(body())


def test_bad_inputs_show_as_sentences(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    from cumulo.state.spec import EnvVarSpec

    source = write_role(tmp_path / "role", {"w.py": "print('never')\n"})
    xp = "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='Nope']/@port"
    bad_xpath = spec(
        source,
        entry_point=ProgramEntryPointSpec("python w.py"),
        environment=(EnvVarSpec("PORT", xpath=xp),),
    )
    no_source = spec(tmp_path / "missing", "Gone", entry_point=ProgramEntryPointSpec("python w.py"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([bad_xpath, no_source])

            def failed(key: str) -> Any:
                o = observed(agent, key)
                return o["state"] == "FailedStartingRole" and o

            a = await wait_for(lambda: failed(bad_xpath.key), 15)
            assert "the entry point cannot start" in a["detail"] and "Nope" in a["detail"]
            b = await wait_for(lambda: failed(no_source.key), 15)
            assert str(tmp_path / "missing") in b["detail"]
            assert "the role folder does not exist; crash loop" in b["detail"]

    run(body())
