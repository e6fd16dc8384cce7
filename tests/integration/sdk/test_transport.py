"""The SDK transport on a real Unix socket: several processes of one instance, pushes, replies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from cumulo.host.channel import Channel, Peer

CLIENT = textwrap.dedent(
    """
    import sys, threading
    from cumulo.sdk import RoleEnvironment
    name = sys.argv[1]
    done = threading.Event()
    RoleEnvironment.changed += lambda e: print(name, "changed",
        RoleEnvironment.get_configuration_setting_value("S"), flush=True)
    RoleEnvironment.status_check += lambda e: e.set_busy() if name == "b" else None
    RoleEnvironment.stopping += lambda e: (print(name, "stopping", flush=True), done.set())
    print(name, "ready", RoleEnvironment.current_role_instance.id, flush=True)
    done.wait(30)
    """
)

SNAPSHOT = {
    "deployment_id": "d1",
    "emulated": False,
    "current": {
        "id": "W_IN_0",
        "role": "W",
        "update_domain": 0,
        "fault_domain": 0,
        "endpoints": {},
    },
    "roles": {},
    "settings": {"S": "1"},
    "local_resources": {},
}


def test_two_processes_share_one_instance_channel() -> None:
    async def body() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="cumulo-sdk-"))
        path = str(tmp / "a.sock")
        snapshot: dict[str, Any] = dict(SNAPSHOT)
        hellos: list[Peer] = []
        channel = Channel(
            path, lambda: snapshot, lambda ev, p: hellos.append(p) if ev == "hello" else None
        )
        await channel.start()
        env = {**os.environ, "CUMULO_AGENT_SOCKET": path}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, n], env=env, stdout=subprocess.PIPE, text=True
            )
            for n in ("a", "b")
        ]
        try:
            deadline = time.monotonic() + 15
            while len(channel.peers) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert {p.pid for p in hellos} == {p.pid for p in procs}
            replies = await channel.request_all({"type": "status_check"}, timeout=5)
            busy = {p.pid: r["busy"] for p, r in replies if r is not None}
            assert busy == {procs[0].pid: False, procs[1].pid: True}
            snapshot = {**SNAPSHOT, "settings": {"S": "2"}}
            channel.broadcast(
                {"type": "changed", "changes": [{"kind": "setting", "name": "S"}], "env": snapshot}
            )
            await asyncio.sleep(0.2)
            done = await channel.request_all({"type": "stopping"}, timeout=5)
            assert all(r is not None and r["op"] == "stopping_done" for _, r in done)
            outs = [p.communicate(timeout=10)[0].split("\n") for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            await channel.close()
            os.rmdir(tmp)
        assert outs[0][:3] == ["a ready W_IN_0", "a changed 2", "a stopping"]
        assert outs[1][:3] == ["b ready W_IN_0", "b changed 2", "b stopping"]

    asyncio.run(asyncio.wait_for(body(), 60))
