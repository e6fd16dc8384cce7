"""A role with requirements.txt runs in its built environment (cumulo.host.roleenv), offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from cumulo.state.spec import EndpointSpec, ProgramEntryPointSpec, SiteSpec

from .conftest import observed, run, running_agent, spec, state_is, wait_for, write_role

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "roleenv"


def make_wheel(wheelhouse: Path) -> None:
    loaded = importlib.util.spec_from_file_location("host_roleenv_wheels", FIXTURES / "wheels.py")
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    module.make_wheel(
        wheelhouse, "greetlib", "1.0", {"greetlib": "GREETING = 'hi from greetlib'\n"}
    )


def test_program_and_site_use_the_role_environment(
    tmp_path: Path, data_dir: Path, host_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheelhouse = tmp_path / "wheels"
    make_wheel(wheelhouse)
    monkeypatch.setenv("CUMULO_PIP_FIND_LINKS", str(wheelhouse))
    monkeypatch.setenv("CUMULO_PIP_NO_INDEX", "true")
    files = {
        "requirements.txt": "greetlib==1.0\n",
        "worker.py": """
            import os, sys, time, greetlib
            print(greetlib.GREETING, os.environ.get("VIRTUAL_ENV") is not None, flush=True)
            while True:
                time.sleep(1)
        """,
        "web.py": """
            import greetlib
            def app(environ, start_response):
                start_response("200 OK", [])
                return [greetlib.GREETING.encode()]
        """,
    }
    source = write_role(tmp_path / "role", files)
    worker = spec(source, entry_point=ProgramEntryPointSpec("python worker.py"))
    web = spec(
        source,
        "Web",
        endpoints=(EndpointSpec("Http", "input", "http", 80, "*"),),
        site=SiteSpec("Web", "wsgi", "web:app"),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([worker, web])
            for s in (worker, web):
                await wait_for(lambda s=s: state_is(agent, s.key, "ReadyRole"), 90, s.key)
            await wait_for(
                lambda: "hi from greetlib True" in observed(agent, worker.key)["log_tail"]
            )
            ep = observed(agent, web.key)["endpoints"][0]
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://{ep['address']}:{ep['local_port']}/")
            assert r.text == "hi from greetlib"
            assert any(e["event"] == "roleenv.ready" for e in agent.events)

    run(body())
