"""End to end: a real ``cumulo serve`` (controller + API, two host agents, a load balancer per
service) driven by the real CLI and the client: deploy to staging, serve through the VIP, swap,
scale out and in, change a setting, delete; Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ...platform_harness import (  # type: ignore[import-not-found]
    Platform,
    running,
    stop_tree,
    wait_until,
)

pytestmark = pytest.mark.slow

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="hello" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model" upgradeDomainCount="2">
  <WebRole name="Web" vmsize="Small">
    <Sites>
      <Site name="Web" cumulo:wsgiApp="app:application">
        <Bindings><Binding name="Http" endpointName="Http" /></Bindings>
      </Site>
    </Sites>
    <Runtime executionContext="elevated">
      <Environment>
        <Variable name="GREETING">
          <RoleInstanceValue xpath="{xpath}" />
        </Variable>
      </Environment>
    </Runtime>
    <Endpoints>
      <InputEndpoint name="Http" protocol="http" port="{port}" localPort="*" />
    </Endpoints>
    <ConfigurationSettings><Setting name="Greeting" /></ConfigurationSettings>
  </WebRole>
</ServiceDefinition>
"""

XPATH = (
    "/RoleEnvironment/CurrentInstance/ConfigurationSettings/ConfigurationSetting"
    "[@name='Greeting']/@value"
)
CSDEF = CSDEF.replace("{xpath}", XPATH)

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="hello" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Web">
    <Instances count="{count}" />
    <ConfigurationSettings><Setting name="Greeting" value="{greeting}" /></ConfigurationSettings>
  </Role>
</ServiceConfiguration>
"""

APP = """
import os

def application(environ, start_response):
    body = ("version {version} " + os.environ.get("GREETING", "")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_service(root: Path, port: int, version: str = "1", count: int = 2) -> Path:
    (root / "Web").mkdir(parents=True, exist_ok=True)
    (root / "ServiceDefinition.csdef").write_text(CSDEF.replace("{port}", str(port)))
    (root / "ServiceConfiguration.cscfg").write_text(
        CSCFG.replace("{count}", str(count)).replace("{greeting}", "hello")
    )
    (root / "Web" / "app.py").write_text(APP.replace("{version}", version))
    return root


class Serve(Platform):
    """``cumulo serve`` with two host agents (two fault domains)."""

    def __init__(self, data: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(data, hosts=2, extra_env=extra_env)

    cli = Platform.run_cli


def serving(extra_env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[Serve]:
    """A ``cumulo serve`` in a fresh data directory; everything it started is gone after."""
    return running(lambda data: Serve(data, extra_env), "cumulo-e2e-")


@pytest.fixture
def serve() -> Iterator[Serve]:
    with serving() as s:
        yield s


def agent_info(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None  # being rewritten by a restarting host agent


def instance_pids(data: Path) -> dict[str, int]:
    """Instance key -> pid of its main process, straight from each host agent."""
    token = (data / "hosts" / "token").read_text().strip()
    out: dict[str, int] = {}
    for info_file in sorted(data.glob("hosts/host*/agent.json")):
        info = agent_info(info_file)
        if info is None:
            continue
        try:
            answer = httpx.get(
                f"{info['url']}/v1/instances",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
        except httpx.HTTPError:
            continue
        for inst in answer.json()["instances"]:
            out[inst["key"]] = inst["pid"]
    return out


def get(url: str) -> str:
    return httpx.get(f"http://{url}/", timeout=5).text


def test_deploy_swap_scale_config_and_ctrl_c(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    src = write_service(tmp_path / "hello", port)
    out = serve.cli("deploy", "hello", str(src), "--slot", "staging", "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()

    status = json.loads(serve.cli("status", "hello", "--json").stdout)
    (staging,) = status["deployments"]
    assert staging["slot"] == "staging" and staging["status"] == "Running"
    assert staging["upgrade"] is None
    instances = staging["instances"]
    assert [(i["id"], i["role"], i["status"], i["update_domain"]) for i in instances] == [
        ("Web_IN_0", "Web", "ReadyRole", 0),
        ("Web_IN_1", "Web", "ReadyRole", 1),
    ]
    assert sorted(i["fault_domain"] for i in instances) == [0, 1]
    vip = staging["vips"]["Http"]
    assert get(vip) == "version 1 hello"

    # instance exec: a command in the instance's context, its exit code the CLI's
    env = "import os; print(os.environ['GREETING'], os.environ['CUMULO_ROLE_INSTANCE_ID'])"
    out = serve.cli("instance", "exec", "hello", "Web_IN_1", "--slot", "staging", "--", "python",
                    "-c", env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hello", "Web_IN_1"]
    out = serve.cli("instance", "exec", "hello", "Web_IN_0", "--slot", "staging", "--", "python",
                    "-c", "raise SystemExit(7)")  # fmt: skip
    assert out.returncode == 7, out.stderr
    out = serve.cli("instance", "exec", "hello", "Web_IN_9", "--slot", "staging", "--", "true")
    assert out.returncode == 3 and "Web_IN_9" in out.stderr, out.stderr

    c = serve.client
    c.wait(c.swap("hello")["id"], timeout=60)
    prod = c.get_deployment("hello", "production")
    assert prod["id"] == staging["id"]
    assert get(prod["vips"]["Http"]) == "version 1 hello"

    c.wait(c.scale("hello", "production", "Web", 3)["id"], timeout=90)
    assert len(c.get_deployment("hello", "production")["instances"]) == 3
    c.wait(c.scale("hello", "production", "Web", 1)["id"], timeout=90)
    assert [i["id"] for i in c.get_deployment("hello", "production")["instances"]] == ["Web_IN_0"]

    cfg = CSCFG.replace("{count}", "1").replace("{greeting}", "bonjour")
    c.wait(c.change_configuration("hello", "production", cfg)["id"], timeout=90)
    wait_until(lambda: get(prod["vips"]["Http"]) == "version 1 bonjour", 30, "the new setting")

    # A manual upgrade to two instances, one domain walked, then rolled back with the CLI.
    v2 = write_service(tmp_path / "v2", port, "2", count=2)
    (tmp_path / "two.cscfg").write_text(cfg.replace('count="1"', 'count="2"'))
    out = serve.cli(
        "upgrade", "hello", str(v2), "--config", str(tmp_path / "two.cscfg"), "--mode", "manual"
    )
    assert out.returncode == 0, out.stderr
    assert serve.cli("walk", "hello", "--domain", "0").returncode == 0
    assert c.get_deployment("hello", "production")["upgrade"]["current_domain"] == 1
    out = serve.cli("rollback", "hello", "--timeout", "60")
    assert out.returncode == 0, out.stderr
    assert c.get_deployment("hello", "production")["upgrade"] is None
    wait_until(
        lambda: {get(prod["vips"]["Http"]) for _ in range(10)} == {"version 1 bonjour"},
        30,
        "version 1 again on every instance",
    )

    events = [e["name"] for e in c.events("hello")]
    assert "swap.done" in events and "operation.succeeded" in events
    ready = json.loads((serve.data / "storage" / "ready.json").read_text())
    assert ready, "the storage service runs with the platform"

    started = serve.pids()
    assert started, "host agents, the load balancer and instances run"
    serve.proc.send_signal(signal.SIGINT)
    assert serve.proc.wait(60) == 0
    wait_until(lambda: not serve.pids(), 10, "every process to exit")


def test_kill_9_of_the_controller_in_the_middle_of_an_upgrade(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    src = write_service(tmp_path / "v1", port, "1", count=4)
    out = serve.cli("deploy", "hello", str(src), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    c = serve.client
    v2 = write_service(tmp_path / "v2", port, "2", count=4)
    out = serve.cli("upgrade", "hello", str(v2), "--mode", "manual", "--timeout", "60")
    assert out.returncode == 0, out.stderr
    c.wait(c.walk("hello", "production", 0)["id"], timeout=90)
    before = instance_pids(serve.data)
    assert len(before) == 4 and all(before.values())

    serve.kill_9_and_restart()
    c = serve.client

    dep = c.get_deployment("hello", "production")
    assert dep["upgrade"]["current_domain"] == 1
    assert dep["upgrade"]["current_domain_state"] == "Before"
    wait_until(
        lambda: all(
            i["status"] == "ReadyRole" for i in c.get_deployment("hello", "production")["instances"]
        ),
        30,
        "the restarted controller to see every instance Ready",
    )
    time.sleep(3)  # a few reconcile passes of the new controller
    assert instance_pids(serve.data) == before, "no instance restarted"

    out = serve.cli("walk", "hello", "--slot", "production", "--domain", "1", "--timeout", "90")
    assert out.returncode == 0, out.stderr
    dep = c.get_deployment("hello", "production")
    assert dep["upgrade"] is None and dep["status"] == "Running"
    answers = {get(dep["vips"]["Http"]) for _ in range(20)}
    assert answers == {"version 2 hello"}


def test_kill_9_of_an_instance_and_of_a_host_agent(serve: Serve, tmp_path: Path) -> None:
    src = write_service(tmp_path / "v1", free_port(), "1", count=2)
    out = serve.cli("deploy", "hello", str(src), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    c = serve.client
    pids = instance_pids(serve.data)
    (key0,) = [k for k in pids if k.endswith("Web_IN_0")]

    def all_ready() -> bool:
        dep = c.get_deployment("hello", "production")
        return dep["status"] == "Running"

    # An instance's process dies: its host agent restarts it; the deployment heals.
    os.kill(pids[key0], signal.SIGKILL)
    wait_until(lambda: instance_pids(serve.data)[key0] not in (None, pids[key0]), 30, "restart")
    wait_until(all_ready, 30, "Running again")

    # A host agent dies: the platform starts it again and it adopts its instances, which never
    # stopped; nothing is placed on another host.
    pids = instance_pids(serve.data)
    info_file = serve.data / "hosts" / "host1" / "agent.json"
    agent_pid = json.loads(info_file.read_text())["pid"]
    os.kill(agent_pid, signal.SIGKILL)
    wait_until(
        lambda: (agent_info(info_file) or {"pid": agent_pid})["pid"] != agent_pid,
        30,
        "a new host agent",
    )
    wait_until(lambda: instance_pids(serve.data) == pids, 30, "the same instances, adopted")
    wait_until(all_ready, 30, "Running")
    placed = {i["id"]: i["host"] for i in c.get_deployment("hello", "production")["instances"]}
    assert placed == {"Web_IN_0": "host0", "Web_IN_1": "host1"}


def test_cumulo_run_deploys_prints_the_url_and_tears_down(tmp_path: Path) -> None:
    src = write_service(tmp_path / "hello", free_port(), "1", count=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cumulo.cli.main", "run", str(src), "--storage-ports", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 90
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("Http: "):
                url = line.split()[1]
            assert line or proc.poll() is None, "cumulo run exited"
        dashboard = proc.stdout.readline()
        assert dashboard.startswith("dashboard: http://127.0.0.1:"), dashboard
        assert "/dashboard/#token=" in dashboard
        home = proc.stdout.readline().split("CUMULO_HOME=")[1].split(")")[0]
        assert httpx.get(url, timeout=5).text == "version 1 hello"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert not Path(home).exists(), "the temporary platform is removed"
    finally:
        stop_tree(proc)  # a failed assertion must not leave the platform running
        if proc.stdout is not None:
            proc.stdout.close()


WORKER_CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="disks" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition">
  <WorkerRole name="Worker" vmsize="Small">
    <LocalResources>
      <LocalStorage name="Data" sizeInMB="10" cleanOnRoleRecycle="false" />
    </LocalResources>
    <Runtime executionContext="elevated">
      <Environment>
        <Variable name="DATA">
          <RoleInstanceValue xpath="{data_xpath}" />
        </Variable>
      </Environment>
      <EntryPoint>
        <ProgramEntryPoint commandLine="python worker.py" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
  </WorkerRole>
</ServiceDefinition>
"""

WORKER_CSDEF = WORKER_CSDEF.replace(
    "{data_xpath}",
    "/RoleEnvironment/CurrentInstance/LocalResources/LocalResource[@name='Data']/@path",
)

WORKER_CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="disks" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Worker"><Instances count="1" /></Role>
</ServiceConfiguration>
"""

WORKER = """
import os, time
with open(os.path.join(os.environ["DATA"], "starts.txt"), "a") as f:
    f.write("start\\n")
fresh = not os.path.exists("approot-marker")
open("approot-marker", "w").close()
starts = open(os.path.join(os.environ["DATA"], "starts.txt")).read().count("start")
print(f"starts={starts} fresh_approot={fresh}", flush=True)
while True:
    time.sleep(60)
"""


def test_reboot_reimage_rebuild_keep_or_wipe_local_storage(serve: Serve, tmp_path: Path) -> None:
    src = tmp_path / "disks"
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(WORKER_CSDEF)
    (src / "ServiceConfiguration.cscfg").write_text(WORKER_CSCFG)
    (src / "Worker" / "worker.py").write_text(WORKER)
    out = serve.cli("deploy", "disks", str(src), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    c = serve.client

    def last_line() -> str:
        text = c.instance_log("disks", "production", "Worker_IN_0", "entry", tail=1)
        return text.strip().splitlines()[-1] if text.strip() else ""

    assert wait_until(last_line, 30, "the worker's first line") == "starts=1 fresh_approot=True"
    logs = serve.cli("logs", "disks", "--tail", "1")
    assert logs.stdout == "[Worker_IN_0] starts=1 fresh_approot=True\n", logs.stderr
    expected = {
        "reboot": "starts=2 fresh_approot=False",  # processes restart; disks kept
        "reimage": "starts=3 fresh_approot=True",  # fresh approot; local storage kept
        "rebuild": "starts=1 fresh_approot=True",  # everything wiped
    }
    for action, line in expected.items():
        out = serve.cli("instance", action, "disks", "Worker_IN_0", "--timeout", "60")
        assert out.returncode == 0, out.stderr
        wait_until(lambda line=line: last_line() == line, 30, f"{action}: {line}")


def test_an_upgrade_whose_requirements_fail_to_build_stops_no_instance(tmp_path: Path) -> None:
    """The new package's role environment is built on every host before the walk stops an
    instance; a requirement that cannot be installed leaves every instance running."""
    with serving({"CUMULO_PIP_NO_INDEX": "1"}) as serve:
        port = free_port()
        out = serve.cli("deploy", "hello", str(write_service(tmp_path / "v1", port)))
        assert out.returncode == 0, out.stderr + serve.logs()
        c = serve.client
        vip = c.get_deployment("hello", "production")["vips"]["Http"]
        before = instance_pids(serve.data)

        v2 = write_service(tmp_path / "v2", port, "2")
        (v2 / "Web" / "requirements.txt").write_text("cumulo-no-such-distribution==1.0\n")
        out = serve.cli("upgrade", "hello", str(v2), "--no-wait")
        assert out.returncode == 0, out.stderr

        failed = wait_until(
            lambda: [e for e in c.events("hello") if e["name"] == "roleenv.failed"],
            60,
            "the failed build in the deployment's events",
        )
        assert "cumulo-no-such-distribution" in json.dumps(failed[0])
        assert instance_pids(serve.data) == before  # nothing stopped or restarted
        assert {get(vip) for _ in range(6)} == {"version 1 hello"}
        view = c.get_deployment("hello", "production")
        assert view["upgrade"] is not None
        assert {i["status"] for i in view["instances"]} == {"ReadyRole"}

        out = serve.cli("rollback", "hello", "--timeout", "60")
        assert out.returncode == 0, out.stderr
        assert instance_pids(serve.data) == before


SDK_APP = """
from cumulo.sdk import RoleEnvironment

def application(environ, start_response):
    body = RoleEnvironment.get_configuration_setting_value("Greeting").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def test_a_setting_read_through_the_sdk_changes_in_place(serve: Serve, tmp_path: Path) -> None:
    """No environment variable holds the setting: its change reaches the running instances
    (Changing/Changed through the SDK) and restarts none; one that is an environment variable
    recycles (the other e2e test)."""
    port = free_port()
    src = write_service(tmp_path / "sdk", port)
    csdef = (src / "ServiceDefinition.csdef").read_text()
    start, end = csdef.index("    <Runtime"), csdef.index("</Runtime>") + len("</Runtime>\n")
    (src / "ServiceDefinition.csdef").write_text(csdef[:start] + csdef[end:])
    (src / "Web" / "app.py").write_text(SDK_APP)
    out = serve.cli("deploy", "hello", str(src))
    assert out.returncode == 0, out.stderr + serve.logs()
    c = serve.client
    vip = c.get_deployment("hello", "production")["vips"]["Http"]
    assert {get(vip) for _ in range(4)} == {"hello"}
    wait_until(
        lambda: all(i.get("sdk_connected") for i in _observed(serve.data)),
        30,
        "the sites' SDK connections",
    )
    before = instance_pids(serve.data)

    cfg = CSCFG.replace("{count}", "2").replace("{greeting}", "bonjour")
    c.wait(c.change_configuration("hello", "production", cfg)["id"], timeout=90)
    wait_until(lambda: {get(vip) for _ in range(4)} == {"bonjour"}, 30, "the new value")
    assert instance_pids(serve.data) == before
    names = [e["name"] for e in c.events("hello")]
    assert "instance.changed" in names, names


def _observed(data: Path) -> list[dict[str, Any]]:
    token = (data / "hosts" / "token").read_text().strip()
    out: list[dict[str, Any]] = []
    for info_file in sorted(data.glob("hosts/host*/agent.json")):
        info = agent_info(info_file)
        if info is not None:
            answer = httpx.get(
                f"{info['url']}/v1/instances",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            out += answer.json()["instances"]
    return out
