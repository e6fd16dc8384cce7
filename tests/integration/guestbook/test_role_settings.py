"""Both roles read StorageConnectionString through cumulo.sdk's RoleEnvironment, and pick up a
changed value online. A real role process talks to a stand-in agent over a real Unix socket
(the SDK's line protocol, cumulo.sdk._transport)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLE

SETTING = "StorageConnectionString"
CHILD = """
import sys, time
import webstore, worker  # both roles' lookups in one process (their module names differ)
for role in (webstore, worker):
    print(role.connection_string(), "|", role._source, flush=True)
sys.stdin.readline()  # the agent has pushed the change
for role in (webstore, worker):
    deadline = time.monotonic() + 10
    while role.connection_string() == "UseDevelopmentStorage=true":
        assert time.monotonic() < deadline, "the change did not arrive"
        time.sleep(0.02)
    print(role.connection_string(), flush=True)
"""


class StandInAgent:
    """Answers ``hello`` with an environment snapshot; pushes ``changed`` on request."""

    def __init__(self, path: str, settings: dict[str, str]) -> None:
        self.settings = dict(settings)
        self.conns: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, Any]:
        return {
            "deployment_id": "d0",
            "emulated": True,
            "current": {
                "id": "R_IN_0",
                "role": "R",
                "update_domain": 0,
                "fault_domain": 0,
                "endpoints": {},
            },
            "roles": {},
            "settings": dict(self.settings),
            "local_resources": {},
        }

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                if json.loads(line).get("op") == "hello":
                    self._send(conn, {"type": "environment", "env": self.env()})

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any]) -> None:
        conn.sendall(json.dumps(message).encode() + b"\n")

    def change(self, name: str, value: str) -> None:
        self.settings[name] = value
        changed = {"type": "changed", "changes": [{"kind": "setting", "name": name}],
                   "env": self.env()}  # fmt: skip
        for conn in self.conns:
            self._send(conn, changed)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gb-", dir="/tmp") as tmp:  # AF_UNIX paths are short
        yield Path(tmp)


def test_the_connection_string_comes_from_the_role_setting_and_changes_online(
    socket_dir: Path,
) -> None:
    path = str(socket_dir / "agent.sock")
    agent = StandInAgent(path, {SETTING: "UseDevelopmentStorage=true"})
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CUMULO_") and "STORAGE" not in k
    }
    env.update(
        CUMULO_AGENT_SOCKET=path,
        PYTHONPATH=os.pathsep.join(str(EXAMPLE / role) for role in ("WebRole", "WorkerRole")),
        STORAGE_CONNECTION_STRING="from the environment: must not be used",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for _ in ("webstore", "worker"):
            line = proc.stdout.readline()
            assert line == f"UseDevelopmentStorage=true | role setting {SETTING}\n"
        explicit = "DefaultEndpointsProtocol=http;AccountName=cs1;AccountKey=a2V5;"
        agent.change(SETTING, explicit)
        out, err = proc.communicate("go\n", timeout=20)
        assert out == f"{explicit}\n{explicit}\n", err
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        agent.close()
