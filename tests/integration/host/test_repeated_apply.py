"""A request repeated while a change is still queued does not queue it twice (regression: two
replacements of one instance left an orphan site holding its fixed port, and the instance
crash-looped on 'Address already in use')."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx

from cumulo.state.spec import EndpointSpec, SiteSpec

from .conftest import observed, pid_alive, run, running_agent, spec, state_is, wait_for, write_role

SITE = {
    "app.py": """
        VERSION = open("version.txt").read().strip()
        def app(environ, start_response):
            start_response("200 OK", [])
            return [VERSION.encode()]
    """,
}


def test_the_same_new_spec_twice_replaces_the_instance_once(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    def version(n: str) -> Path:
        root = write_role(tmp_path / f"v{n}", SITE)
        (root / "version.txt").write_text(n)
        return root

    v1 = spec(
        version("1"),
        "Web",
        endpoints=(EndpointSpec("Http", "input", "http", 80, 8080),),
        site=SiteSpec("Web", "wsgi", "app:app"),
    )
    v2 = replace(v1, approot_source=str(version("2")))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([v1])
            await wait_for(lambda: state_is(agent, v1.key, "ReadyRole"))
            old_pid = observed(agent, v1.key)["pid"]
            first = await agent.apply([v2])
            again = await agent.apply([v2])  # the controller repeats itself before it is done
            assert first["recycled"] == [v2.key] and again["unchanged"] == [v2.key]
            await wait_for(
                lambda: (
                    state_is(agent, v2.key, "ReadyRole")
                    and observed(agent, v2.key)["pid"] != old_pid
                ),
                20,
                "the new version to run",
            )
            o = observed(agent, v2.key)
            address = o["address"]
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://{address}:8080/")
            assert answer.text == "2"
            assert not pid_alive(old_pid)
            assert [g.key for g in agent.guests.values()] == [v2.key]
            assert o["restarts"] == 0, o

    run(body())
