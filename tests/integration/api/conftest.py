"""A tiny service (one worker role with an input endpoint), its package, and an API over a real
SQLite store in a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cumulo.api.app import create_app
from cumulo.api.auth import ensure_token
from cumulo.api.server import ThreadedServer
from cumulo.client import Client
from cumulo.clock import FakeClock
from cumulo.controller.management import Management
from cumulo.package.build import build_package
from cumulo.storage.store import SqliteStore

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="tiny" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition">
  <WorkerRole name="Worker" vmsize="Small">
    <Runtime>
      <EntryPoint>
        <ProgramEntryPoint commandLine="python worker.py" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
    <Endpoints>
      <InputEndpoint name="Tcp" protocol="tcp" port="9000" />
    </Endpoints>
    <ConfigurationSettings>
      <Setting name="Greeting" />
    </ConfigurationSettings>
  </WorkerRole>
</ServiceDefinition>
"""


def cscfg(count: int = 2, greeting: str = "hello") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="tiny" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Worker">
    <Instances count="{count}" />
    <ConfigurationSettings>
      <Setting name="Greeting" value="{greeting}" />
    </ConfigurationSettings>
  </Role>
</ServiceConfiguration>
"""


def build(tmp: Path, version: str = "1") -> bytes:
    src = tmp / f"src{version}"
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(CSDEF)
    (src / "ServiceConfiguration.cscfg").write_text(cscfg())
    (src / "Worker" / "worker.py").write_text(f"print('version {version}')\n")
    out = tmp / f"tiny{version}.cspkg"
    build_package(src, out)
    return out.read_bytes()


@pytest.fixture
def package(tmp_path: Path) -> bytes:
    return build(tmp_path, "1")


@pytest.fixture
def package2(tmp_path: Path) -> bytes:
    return build(tmp_path, "2")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def management(data_dir: Path) -> Iterator[Management]:
    store = SqliteStore(data_dir, clock=FakeClock())
    yield Management(store, clock=FakeClock())
    store.close()


@pytest.fixture
def server(management: Management, data_dir: Path) -> Iterator[tuple[str, str]]:
    """The API on a real socket (127.0.0.1, port 0): (url, token)."""
    token = ensure_token(data_dir)
    with ThreadedServer(create_app(management, token=token)) as url:
        yield url, token


@pytest.fixture
def api(server: tuple[str, str]) -> Iterator[httpx.Client]:
    url, token = server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def client(server: tuple[str, str]) -> Iterator[Client]:
    url, token = server
    with Client(url, token) as c:
        yield c
