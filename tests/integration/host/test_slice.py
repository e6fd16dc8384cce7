"""The vertical slice: a worker's program and hosted WSGI and ASGI sites, on real ports."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx

from cumulo.host.agent import HostAgent
from cumulo.state.spec import EndpointSpec, EnvVarSpec, ProgramEntryPointSpec, SiteSpec

from .conftest import observed, pid_alive, run, running_agent, spec, state_is, wait_for, write_role

WORKER = {
    "worker.py": """
        import os, time
        print("uid", os.getuid(), flush=True)
        print("greeting", os.environ["GREETING"], os.environ["MY_ID"], flush=True)
        print("tmp", os.environ["TMPDIR"], flush=True)
        while True:
            time.sleep(1)
    """
}
SITES = {
    "wsgiapp.py": """
        import os
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            body = f"wsgi {os.environ['CUMULO_ROLE_INSTANCE_ID']} uid={os.getuid()}"
            return [body.encode()]
    """,
    "asgiapp.py": """
        import os
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            body = f"asgi {os.environ['CUMULO_ROLE_INSTANCE_ID']}"
            await send({"type": "http.response.body", "body": body.encode()})
    """,
}
XP = "/RoleEnvironment/CurrentInstance/@id"


def test_worker_and_hosted_sites(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    worker = write_role(tmp_path / "worker", WORKER)
    web = write_role(tmp_path / "web", SITES)
    http = (EndpointSpec("Http", "input", "http", 80, "*"),)
    specs = [
        spec(
            worker,
            entry_point=ProgramEntryPointSpec("python worker.py"),
            environment=(EnvVarSpec("GREETING", "hello"), EnvVarSpec("MY_ID", xpath=XP)),
        ),
        spec(web, "Wsgi", endpoints=http, site=SiteSpec("Web", "wsgi", "wsgiapp:app")),
        spec(web, "Asgi", endpoints=http, site=SiteSpec("Web", "asgi", "asgiapp:app")),
    ]

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            result = await agent.apply(specs)
            assert sorted(result["started"]) == sorted(s.key for s in specs)
            for s in specs:
                await wait_for(lambda s=s: state_is(agent, s.key, "ReadyRole"), what=s.key)
            # a second apply of the same set touches nothing
            again = await agent.apply(specs)
            assert sorted(again["unchanged"]) == sorted(s.key for s in specs)
            answers = {}
            async with httpx.AsyncClient() as client:
                for role in ("Wsgi", "Asgi"):
                    o = observed(agent, f"dep1/{role}_IN_0")
                    ep = o["endpoints"][0]
                    assert ep["routable"] and ep["address"] == o["address"]
                    r = await client.get(f"http://{ep['address']}:{ep['local_port']}/")
                    answers[role] = r.text
            assert answers["Asgi"] == "asgi Asgi_IN_0"
            assert answers["Wsgi"].startswith("wsgi Wsgi_IN_0 uid=")
            addresses = {o["address"] for o in agent.observed()}
            assert len(addresses) == 3  # one DIP per instance
            key = specs[0].key
            log = await wait_for(
                lambda: (
                    len(observed(agent, key)["log_tail"]) >= 3 and observed(agent, key)["log_tail"]
                )
            )
            assert "greeting hello Worker_IN_0" in log
            if os.geteuid() == 0:  # limited instances never run as root
                assert "uid 0" not in log
                assert answers["Wsgi"] != "wsgi Wsgi_IN_0 uid=0"
                assert observed(agent, key)["user"].startswith("cumulo-i")
            pids = [o["pid"] for o in agent.observed()]
            await agent.apply([])
            await agent.settle()
            assert agent.observed() == []
            assert not any(pid_alive(p) for p in pids)
            assert not list((data_dir / "instances").iterdir())

    run(body())


def test_apply_is_scoped_and_changes_settings_in_place(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    worker = write_role(tmp_path / "worker", WORKER)
    a = spec(
        worker,
        entry_point=ProgramEntryPointSpec("python worker.py"),
        environment=(EnvVarSpec("GREETING", "a"), EnvVarSpec("MY_ID", xpath=XP)),
    )
    b = spec(
        worker,
        deployment_id="dep2",
        entry_point=ProgramEntryPointSpec("python worker.py"),
        environment=(EnvVarSpec("GREETING", "b"), EnvVarSpec("MY_ID", xpath=XP)),
    )

    async def body() -> None:
        agent: HostAgent
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([a, b])
            for s in (a, b):
                await wait_for(lambda s=s: state_is(agent, s.key, "ReadyRole"))
            pid_b = observed(agent, b.key)["pid"]
            # dep1 scope: dep2 is not touched
            assert (await agent.apply([], scope="dep1"))["stopped"] == [a.key]
            await agent.settle()
            assert [o["key"] for o in agent.observed()] == [b.key]
            assert observed(agent, b.key)["pid"] == pid_b
            changed = b.__class__(**{**b.__dict__, "settings": (("S", "2"),)})
            assert (await agent.apply([changed], scope="dep2"))["changed"] == [b.key]
            await agent.settle()
            assert observed(agent, b.key)["pid"] == pid_b  # no SDK peer: applied online

    run(body())


def test_an_asgi_site_that_blocks_its_loop_is_recycled(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    files = {
        "blocking.py": """
            import time
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                if scope["path"] == "/hang":
                    time.sleep(3600)  # blocks the event loop
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})
        """
    }
    web = write_role(tmp_path / "web", files)
    s = spec(
        web,
        "Asgi",
        endpoints=(EndpointSpec("Http", "input", "http", 80, "*"),),
        site=SiteSpec("Web", "asgi", "blocking:app"),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            pid = observed(agent, s.key)["pid"]
            ep = observed(agent, s.key)["endpoints"][0]
            async with httpx.AsyncClient() as client:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"http://{ep['address']}:{ep['local_port']}/hang", timeout=0.5)
            await wait_for(
                lambda: any(e["event"] == "instance.unresponsive" for e in agent.events), 15
            )
            await wait_for(
                lambda: (
                    state_is(agent, s.key, "ReadyRole")
                    and observed(agent, s.key)["pid"] not in (None, pid)
                ),
                15,
            )

    run(body())


def test_a_limited_site_serves_on_a_privileged_local_port(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    web = write_role(tmp_path / "web", SITES)
    s = spec(
        web,
        "Wsgi",
        endpoints=(EndpointSpec("Http", "input", "http", 80, 80),),
        site=SiteSpec("Web", "wsgi", "wsgiapp:app"),
    )
    a = spec(
        web,
        "Asgi",
        endpoints=(EndpointSpec("Http", "input", "http", 80, 80),),
        site=SiteSpec("Web", "asgi", "asgiapp:app"),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s, a])
            for x in (s, a):
                await wait_for(lambda x=x: state_is(agent, x.key, "ReadyRole"), what=x.key)
            async with httpx.AsyncClient() as client:
                for x in (s, a):
                    o = observed(agent, x.key)
                    assert o["endpoints"][0]["local_port"] == 80
                    r = await client.get(f"http://{o['address']}:80/")
                    assert r.status_code == 200 and x.role.lower() in r.text.lower()

    run(body())
