"""Graceful stop with a grace period, and what recycle/reboot/reimage/rebuild keep on disk."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from cumulo.host import localdisk
from cumulo.state.spec import LocalResourceSpec, ProgramEntryPointSpec

from .conftest import observed, pid_alive, run, running_agent, spec, state_is, wait_for, write_role


def test_sigterm_then_sigkill_after_the_grace_period(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    files = {
        "stubborn.py": """
            import signal, time
            signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
            print("up", flush=True)
            while True:
                time.sleep(0.05)
        """
    }
    source = write_role(tmp_path / "role", files)
    s = spec(source, entry_point=ProgramEntryPointSpec("python stubborn.py"), stop_grace_s=1.0)

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: "up" in observed(agent, s.key)["log_tail"])
            pid = observed(agent, s.key)["pid"]
            log = Path(agent.guests[s.key].paths.logs) / "entry.log"
            started = time.monotonic()
            await agent.apply([])
            await wait_for(lambda: "ignoring SIGTERM" in log.read_text(), 5, "SIGTERM")
            assert pid_alive(pid)
            await agent.settle()
            took = time.monotonic() - started
            assert not pid_alive(pid)
            assert 0.9 <= took < 5, took  # SIGKILL came when the 1 s grace period ended

    run(body())


def test_disk_semantics_of_recycle_reboot_reimage_rebuild(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    files = {
        "w.py": """
            import os, pathlib, time
            for name in ("KEEP", "WIPE"):
                d = pathlib.Path(os.environ["CUMULO_LOCAL_RESOURCE_" + name])
                n = len(list(d.iterdir()))
                (d / f"f{time.time_ns()}").write_text("x")
                print(name, n, flush=True)
            (pathlib.Path(os.environ["TMPDIR"]) / "t").write_text("x")
            while True:
                time.sleep(0.05)
        """
    }
    source = write_role(tmp_path / "role", files)
    s = spec(
        source,
        entry_point=ProgramEntryPointSpec("python w.py"),
        local_resources=(
            LocalResourceSpec("Keep", 5, clean_on_role_recycle=False),
            LocalResourceSpec("Wipe", 5, clean_on_role_recycle=True),
        ),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            guest = agent.guests[s.key]
            approot = Path(guest.paths.approot)

            async def next_run(action) -> list[str]:  # type: ignore[no-untyped-def]
                before = observed(agent, s.key)["pid"]
                action()
                await wait_for(
                    lambda: (
                        state_is(agent, s.key, "ReadyRole")
                        and observed(agent, s.key)["pid"] not in (None, before)
                        and len(observed(agent, s.key)["log_tail"]) >= 2
                    )
                )
                return observed(agent, s.key)["log_tail"][-2:]

            await wait_for(lambda: len(observed(agent, s.key)["log_tail"]) >= 2)
            assert observed(agent, s.key)["log_tail"] == ["KEEP 0", "WIPE 0"]
            (approot / "marker").write_text("x")
            logs = Path(guest.paths.logs) / "entry.log"

            def crash() -> None:
                logs.write_text("")
                import os
                import signal

                os.kill(observed(agent, s.key)["pid"], signal.SIGKILL)

            assert await next_run(crash) == ["KEEP 1", "WIPE 0"]  # recycle
            assert (approot / "marker").exists()

            def op(name: str):  # type: ignore[no-untyped-def]
                def go() -> None:
                    logs.write_text("")
                    agent.operate(s.key, name)

                return go

            assert await next_run(op("reboot")) == ["KEEP 2", "WIPE 1"]
            assert (approot / "marker").exists()
            assert await next_run(op("reimage")) == ["KEEP 3", "WIPE 0"]
            assert not (approot / "marker").exists()
            assert await next_run(op("rebuild")) == ["KEEP 0", "WIPE 0"]
            # a new package (spec change beyond settings) recycles with a fresh approot
            (approot / "marker").write_text("x")
            changed = dataclasses.replace(s, stop_grace_s=2.0)
            assert (await agent.apply([changed]))["recycled"] == [s.key]
            await wait_for(
                lambda: agent.guests[s.key] is not guest and state_is(agent, s.key, "ReadyRole")
            )
            assert not (Path(agent.guests[s.key].paths.approot) / "marker").exists()

    run(body())


@pytest.mark.skipif(not localdisk.available(), reason="needs root, mkfs.ext4 and loop devices")
def test_local_storage_quota_is_enforced(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    files = {
        "fill.py": """
            import errno, os, time
            path = os.path.join(os.environ["CUMULO_LOCAL_RESOURCE_SMALL"], "fill")
            written = 0
            try:
                with open(path, "wb") as f:
                    for _ in range(64):
                        f.write(b"x" * (1 << 20))
                        f.flush()
                        os.fsync(f.fileno())
                        written += 1
            except OSError as exc:
                print("stopped", errno.errorcode[exc.errno], written, flush=True)
            while True:
                time.sleep(1)
        """
    }
    source = write_role(tmp_path / "role", files)
    s = spec(
        source,
        entry_point=ProgramEntryPointSpec("python fill.py"),
        local_resources=(LocalResourceSpec("Small", 4),),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            line = await wait_for(
                lambda: [x for x in observed(agent, s.key)["log_tail"] if x.startswith("stopped")]
            )
            _, code, written = line[0].split()
            assert code == "ENOSPC" and 4 <= int(written) < 8
            assert observed(agent, s.key)["local_storage"] == "ext4-loop"
            mount = Path(agent.guests[s.key].paths.local["Small"])
            assert localdisk.is_mounted(mount)
            await agent.apply([])
            await agent.settle()
            assert not localdisk.is_mounted(mount)

    run(body())
