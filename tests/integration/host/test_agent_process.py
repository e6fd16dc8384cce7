"""`cumulo host run` as a real process: the API, and kill -9 of the agent -> adoption."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo.state.spec import EndpointSpec, ProgramEntryPointSpec, SiteSpec

from .conftest import pid_alive, spec, write_role

ROLE = {
    "role.py": """
        from cumulo.sdk import RoleEntryPoint
        class Role(RoleEntryPoint):
            pass
    """,
    "web.py": """
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]
    """,
}


class Agent:
    def __init__(self, data_dir: Path, host_id: str) -> None:
        self.data_dir = data_dir
        self.host_id = host_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    def start(self) -> None:
        info = self.data_dir / "agent.json"
        info.unlink(missing_ok=True)
        log = open(self.data_dir / "agent.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cumulo.cli.main",
                "host",
                "run",
                "--data",
                str(self.data_dir),
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                str(self.data_dir / "token"),
                "--host-id",
                self.host_id,
                "--heartbeat-interval",
                "0.2",
                "--heartbeat-timeout",
                "3",
                "--backoff-base",
                "0.1",
                "--backoff-cap",
                "0.5",
                "--drain",
                "0",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 20
        while not info.exists():
            assert self.proc.poll() is None, (self.data_dir / "agent.log").read_text()
            assert time.monotonic() < deadline, "the host agent did not start"
            time.sleep(0.05)
        self.url = json.loads(info.read_text())["url"]
        self.token = (self.data_dir / "token").read_text().strip()

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def instances(self) -> list[dict[str, Any]]:
        r = self.call("GET", "/v1/instances")
        assert r.status_code == 200, r.text
        return r.json()["instances"]  # type: ignore[no-any-return]

    def wait(self, predicate: Any, timeout: float = 20, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.instances())
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.instances()}"
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def agent(data_dir: Path, host_id: str) -> Iterator[Agent]:
    a = Agent(data_dir, host_id)
    try:
        yield a
    finally:
        if a.proc is not None and a.proc.poll() is None:
            try:
                a.call("PUT", "/v1/instances", json={"instances": []})
                a.wait(lambda items: items == [], 20, "instances to stop")
            finally:
                a.stop()


def ready(key: str) -> Any:
    return lambda items: next(
        (i for i in items if i["key"] == key and i["state"] == "ReadyRole" and i["pid"]), None
    )


def test_api_auth_errors_and_operations(tmp_path: Path, agent: Agent) -> None:
    source = write_role(tmp_path / "role", ROLE)
    web = spec(
        source,
        "Web",
        endpoints=(EndpointSpec("Http", "input", "http", 80, "*"),),
        site=SiteSpec("Web", "wsgi", "web:app"),
    )
    agent.start()
    assert httpx.get(agent.url + "/v1/instances").status_code == 401
    bad = agent.call("GET", "/v1/health", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["code"] == "AuthenticationFailed"
    assert bad.headers["content-type"] == "application/problem+json"
    assert agent.call("GET", "/v1/health").json()["host"] == agent.host_id
    r = agent.call(
        "PUT", "/v1/instances", json={"instances": [{**web.to_json(), "role_kind": "db"}]}
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("instances[0]: spec.role_kind is 'db'")
    r = agent.call("PUT", "/v1/instances", content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    assert agent.call("GET", "/v1/instances/dep1/Nope_IN_0").status_code == 404

    r = agent.call("PUT", "/v1/instances", json={"instances": [web.to_json()]})
    assert r.status_code == 200 and r.json()["started"] == [web.key]
    item = agent.wait(ready(web.key), what="Web ready")
    ep = item["endpoints"][0]
    assert httpx.get(f"http://{ep['address']}:{ep['local_port']}/").text == "ok"
    assert agent.call("GET", f"/v1/instances/{web.key}").json()["state"] == "ReadyRole"

    # reboot: same instance, new process, approot kept
    approot = next(agent.data_dir.glob("instances/*/approot"))
    (approot / "marker").write_text("kept")
    r = agent.call("POST", f"/v1/instances/{web.key}/reboot")
    assert r.status_code == 202
    agent.wait(
        lambda items: (
            items[0]["pid"] not in (None, item["pid"]) and items[0]["state"] == "ReadyRole"
        )
    )
    assert (approot / "marker").exists()
    # reimage: fresh approot
    before = agent.instances()[0]["pid"]
    assert agent.call("POST", f"/v1/instances/{web.key}/reimage").status_code == 202
    agent.wait(
        lambda items: items[0]["pid"] not in (None, before) and items[0]["state"] == "ReadyRole"
    )
    assert not (approot / "marker").exists()
    assert agent.call("POST", f"/v1/instances/{web.key}/explode").status_code == 400

    log = agent.call("GET", f"/v1/instances/{web.key}/logs/site?tail=5")
    assert log.status_code == 200
    events = [
        json.loads(line) for line in agent.call("GET", "/v1/events?since=0").text.splitlines()
    ]
    names = [e["event"] for e in events]
    assert "instance.reboot" in names and "instance.reimage" in names
    assert all(b["seq"] > a["seq"] for a, b in itertools.pairwise(events))
    topo = agent.call("PUT", "/v1/deployments/dep1/topology", json={"roles": {}})
    assert topo.status_code == 204


def test_kill_9_of_the_agent_then_restart_adopts_the_instances(
    tmp_path: Path, agent: Agent
) -> None:
    source = write_role(tmp_path / "role", ROLE)
    worker = spec(source, entry_point=ProgramEntryPointSpec("python -m cumulo.sdk.run role:Role"))
    agent.start()
    agent.call("PUT", "/v1/instances", json={"instances": [worker.to_json()]})
    before = agent.wait(ready(worker.key), what="worker ready")
    pid = before["pid"]

    agent.kill9()
    assert pid_alive(pid)  # instances keep running while the agent is away
    agent.start()
    after = agent.wait(ready(worker.key), what="adopted worker")
    assert after["pid"] == pid
    assert after["user"] == before["user"]  # found again from what the killed agent left
    if os.geteuid() == 0:
        assert before["user"].startswith("cumulo-i")
    events = agent.call("GET", "/v1/events?since=0").text
    assert '"instance.adopted"' in events
    # the SDK reconnects; heartbeats flow again (no UnresponsiveRole for a healthy role)
    time.sleep(3.5)
    current = agent.instances()[0]
    assert current["state"] == "ReadyRole" and current["pid"] == pid
    assert '"sdk.connected"' in agent.call("GET", "/v1/events?since=0").text
    # the same desired state again: nothing to do
    r = agent.call("PUT", "/v1/instances", json={"instances": [worker.to_json()]})
    assert r.json()["unchanged"] == [worker.key]
    # an adopted process that dies is seen at once (pidfd) and restarted
    os.kill(pid, signal.SIGKILL)
    restarted = agent.wait(
        lambda items: (
            items[0]["pid"] not in (None, pid) and items[0]["state"] == "ReadyRole" and items[0]
        ),
        what="restart after the adopted process died",
    )
    assert restarted["restarts"] >= 1


def test_streams_and_status_command(tmp_path: Path, agent: Agent) -> None:
    source = write_role(
        tmp_path / "role",
        {
            "talk.py": "import time\nfor i in range(10**6):\n    print('tick', i, flush=True)\n"
            "    time.sleep(0.05)\n"
        },
    )
    worker = spec(source, entry_point=ProgramEntryPointSpec("python talk.py"))
    agent.start()
    headers = {"Authorization": f"Bearer {agent.token}"}
    with httpx.stream(
        "GET", agent.url + "/v1/events?since=0&follow=1", headers=headers, timeout=20
    ) as events:
        agent.call("PUT", "/v1/instances", json={"instances": [worker.to_json()]})
        seen = []
        for line in events.iter_lines():
            seen.append(json.loads(line)["event"])
            if "instance.started" in seen:
                break
    assert seen[0] == "host.started" and "instance.state" in seen
    agent.wait(ready(worker.key))
    with httpx.stream(
        "GET",
        agent.url + f"/v1/instances/{worker.key}/logs/entry?tail=1&follow=1",
        headers=headers,
        timeout=20,
    ) as log:
        ticks = []
        for line in log.iter_lines():
            if line.startswith("tick"):
                ticks.append(int(line.split()[1]))
            if len(ticks) >= 4:
                break
    assert ticks == sorted(ticks) and ticks[-1] > ticks[0]
    out = subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", "host", "status", "--data", str(agent.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert worker.key in out and "ReadyRole" in out
    missing = subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", "host", "status", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "No host agent has run on" in missing.stderr and "Traceback" not in missing.stderr


def test_a_process_that_died_while_the_agent_was_away(tmp_path: Path, agent: Agent) -> None:
    source = write_role(
        tmp_path / "role",
        {
            "parent.py": """
                import subprocess, sys, time
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
                print("child", child.pid, flush=True)
                while True:
                    time.sleep(1)
            """
        },
    )
    worker = spec(source, entry_point=ProgramEntryPointSpec("python parent.py"))
    agent.start()
    agent.call("PUT", "/v1/instances", json={"instances": [worker.to_json()]})
    first = agent.wait(
        lambda items: (
            items
            and items[0]["pid"]
            and any(x.startswith("child ") for x in items[0]["log_tail"])
            and items[0]
        ),
        what="worker with its child",
    )
    child = int(next(x for x in first["log_tail"] if x.startswith("child ")).split()[1])
    agent.kill9()
    os.kill(first["pid"], signal.SIGKILL)  # dies while no agent watches
    agent.start()
    agent.wait(
        lambda items: (
            items[0]["pid"] not in (None, first["pid"]) and items[0]["state"] == "ReadyRole"
        ),
        what="restart of the instance whose process died",
    )
    deadline = time.monotonic() + 5
    while pid_alive(child):
        assert time.monotonic() < deadline, "the orphan of the dead process survived"
        time.sleep(0.05)
    events = agent.call("GET", "/v1/events?since=0").text
    assert '"instance.adopt_failed"' in events


def test_sigterm_ends_the_agent_despite_open_streams(agent: Agent) -> None:
    import threading

    agent.start()
    opened = threading.Event()

    def follow() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET",
                agent.url + "/v1/events?since=0&follow=1",
                headers={"Authorization": f"Bearer {agent.token}"},
                timeout=30,
            ) as r,
        ):
            for _ in r.iter_lines():
                opened.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(10)
    assert agent.proc is not None
    started = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(15)
    assert time.monotonic() - started < 8
    reader.join(10)
