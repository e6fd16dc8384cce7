"""An upgrade recycles only the roles whose files, definition or baked settings changed.

Azure's upgrade of a whole package restarts every role; cumulo digests each role's own files in
the package (the entries under ``<Role>/``), so a package that changes only the worker's code
leaves the web role's instances running (same pids) while the worker's are replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ...platform_harness import wait_until  # type: ignore[import-not-found]
from .test_serve import Serve, free_port, instance_pids, serving

pytestmark = pytest.mark.slow

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="duo" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model" upgradeDomainCount="2">
  <WebRole name="Web" vmsize="Small">
    <Sites>
      <Site name="Web" cumulo:wsgiApp="app:application">
        <Bindings><Binding name="Http" endpointName="Http" /></Bindings>
      </Site>
    </Sites>
    <Runtime executionContext="elevated" />
    <Endpoints>
      <InputEndpoint name="Http" protocol="http" port="{port}" localPort="*" />
    </Endpoints>
  </WebRole>
  <WorkerRole name="Worker" vmsize="Small">
    <Runtime executionContext="elevated">
      <EntryPoint>
        <ProgramEntryPoint commandLine="python worker.py" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
  </WorkerRole>
</ServiceDefinition>
"""

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="duo" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Web"><Instances count="2" /></Role>
  <Role name="Worker"><Instances count="2" /></Role>
</ServiceConfiguration>
"""

APP = """
def application(environ, start_response):
    body = b"web {version}"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

WORKER = """
import time
VERSION = "{version}"
while True:
    time.sleep(60)
"""


def write(root: Path, port: int, web: str, worker: str) -> Path:
    (root / "Web").mkdir(parents=True)
    (root / "Worker").mkdir()
    (root / "ServiceDefinition.csdef").write_text(CSDEF.replace("{port}", str(port)))
    (root / "ServiceConfiguration.cscfg").write_text(CSCFG)
    (root / "Web" / "app.py").write_text(APP.replace("{version}", web))
    (root / "Worker" / "worker.py").write_text(WORKER.replace("{version}", worker))
    return root


def by_role(pids: dict[str, int], role: str) -> dict[str, int]:
    return {key: pid for key, pid in pids.items() if f"/{role}/" in key or f"{role}_IN_" in key}


@pytest.fixture
def serve() -> Iterator[Serve]:
    with serving() as s:
        yield s


def test_an_upgrade_that_changes_one_role_recycles_only_that_role(
    serve: Serve, tmp_path: Path
) -> None:
    port = free_port()
    out = serve.cli("deploy", "duo", str(write(tmp_path / "v1", port, "1", "1")), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    before = instance_pids(serve.data)
    web, worker = by_role(before, "Web"), by_role(before, "Worker")
    assert len(web) == 2 and len(worker) == 2, before

    out = serve.cli(
        "upgrade", "duo", str(write(tmp_path / "v2", port, "1", "2")), "--timeout", "90"
    )
    assert out.returncode == 0, out.stderr + serve.logs()
    c = serve.client
    wait_until(
        lambda: c.get_deployment("duo", "production")["upgrade"] is None, 30, "the upgrade's end"
    )
    after = instance_pids(serve.data)
    assert by_role(after, "Web") == web, "the web role's files did not change: no recycle"
    new_worker = by_role(after, "Worker")
    assert len(new_worker) == 2 and not set(new_worker.values()) & set(worker.values())

    # Now only the web role changes: the worker instances of v2 stay, the site answers v2.
    out = serve.cli(
        "upgrade", "duo", str(write(tmp_path / "v3", port, "2", "2")), "--timeout", "90"
    )
    assert out.returncode == 0, out.stderr + serve.logs()
    final = instance_pids(serve.data)
    assert by_role(final, "Worker") == new_worker
    assert not set(by_role(final, "Web").values()) & set(web.values())
    vip = c.get_deployment("duo", "production")["vips"]["Http"]
    assert {httpx.get(f"http://{vip}/", timeout=5).text for _ in range(10)} == {"web 2"}

    # v1's extracted package served nothing any more (web came from v1, worker from v2, now
    # web from v3): it is pruned; v2's and v3's stay.
    def extracted() -> set[str]:
        return {p.name for p in (serve.data / "approots").iterdir() if not p.name.startswith(".")}

    current = c.get_deployment("duo", "production")["package"].removeprefix("sha256:")
    wait_until(lambda: len(extracted()) == 2, 20, "the unused extracted package to go")
    assert current in extracted()
