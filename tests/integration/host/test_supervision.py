"""Startup tasks, crash loops, hangs, orphans, memory limits: real processes, fast settings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cumulo.host.agent import HostAgent
from cumulo.state.spec import LimitsSpec, ProgramEntryPointSpec, StartupTaskSpec

from .conftest import (
    observed,
    pid_alive,
    run,
    running_agent,
    shared,
    spec,
    state_is,
    wait_for,
    write_role,
)

SLEEPER = {
    "worker.py": "import time\nprint('worker running', flush=True)\nwhile True: time.sleep(1)\n"
}


def history(agent: HostAgent, key: str) -> list[str]:
    return [f"{e['old']}>{e['new']}" for e in events(agent, key, "instance.state")]


def events(agent: HostAgent, key: str, name: str) -> list[dict]:
    return [e for e in agent.events if e["key"] == key and e["event"] == name]


def test_failing_simple_task_blocks_and_is_retried(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    counter = shared(data_dir)
    files = {
        **SLEEPER,
        "setup.py": f"""
            import pathlib, sys
            p = pathlib.Path({str(counter / "n")!r})
            n = int(p.read_text()) + 1 if p.exists() else 1
            p.write_text(str(n))
            print("setup attempt", n, flush=True)
            sys.exit(0 if n >= 4 else 3)
        """,
    }
    role = write_role(tmp_path / "role", files)
    s = spec(
        role,
        startup_tasks=(StartupTaskSpec("python setup.py"),),
        entry_point=ProgramEntryPointSpec("python worker.py"),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            seen: set[str] = set()

            def ready() -> bool:
                o = observed(agent, s.key)
                seen.add(o["state"])
                if o["state"] in ("RestartingRole", "FailedStartingRole"):
                    assert "startup task 1 (simple: python setup.py) exited 3" in o["detail"]
                return o["state"] == "ReadyRole"

            await wait_for(ready, what="ReadyRole after three failed attempts")
            assert "FailedStartingRole" in seen
            assert (counter / "n").read_text() == "4"
            assert history(agent, s.key) == [
                "StartingRole>BusyRole",
                "BusyRole>RestartingRole",  # attempt 1: exit 3
                "RestartingRole>BusyRole",
                "BusyRole>RestartingRole",  # attempt 2
                "RestartingRole>BusyRole",
                "BusyRole>FailedStartingRole",  # attempt 3: a loop now
                "FailedStartingRole>BusyRole",
                "BusyRole>ReadyRole",  # attempt 4 succeeds, the entry point starts
            ]
            assert len(events(agent, s.key, "instance.started")) == 1  # entry never ran before
            delays = [e["delay"] for e in events(agent, s.key, "instance.backoff")]
            assert delays == [0.1, 0.2, 0.4]

    run(body())


def test_background_is_not_waited_and_foreground_holds_the_recycle(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    flag = shared(data_dir)
    files = {
        "bg.py": "import time\ntime.sleep(300)\n",
        "fg.py": f"""
            import pathlib, time
            stop = pathlib.Path({str(flag / "stop-fg")!r})
            while not stop.exists():
                time.sleep(0.05)
        """,
        "crash.py": f"""
            import pathlib, time
            go = pathlib.Path({str(flag / "crash")!r})
            while not go.exists():
                time.sleep(0.05)
            raise SystemExit(5)
        """,
    }
    role = write_role(tmp_path / "role", files)
    s = spec(
        role,
        startup_tasks=(
            StartupTaskSpec("python bg.py", task_type="background"),
            StartupTaskSpec("python fg.py", task_type="foreground"),
        ),
        entry_point=ProgramEntryPointSpec("python crash.py"),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(
                lambda: state_is(agent, s.key, "ReadyRole"), 10, "Ready with tasks running"
            )
            started = events(agent, s.key, "task.started")
            assert [e["type"] for e in started] == ["background", "foreground"]
            bg_pid, fg_pid = started[0]["pid"], started[1]["pid"]
            assert pid_alive(bg_pid) and pid_alive(fg_pid)
            (flag / "crash").write_text("")
            await wait_for(
                lambda: "waiting for foreground task 2" in observed(agent, s.key)["detail"],
                what="the recycle waiting for the foreground task",
            )
            assert not pid_alive(bg_pid)  # background tasks stop with the instance
            assert pid_alive(fg_pid)
            assert len(events(agent, s.key, "instance.started")) == 1
            (flag / "crash").unlink()
            (flag / "stop-fg").write_text("")
            await wait_for(lambda: len(events(agent, s.key, "instance.started")) == 2)
            assert observed(agent, s.key)["last_exit_code"] == 5

    run(body())


def test_crash_loop_backs_off_and_shows_cycling(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    role = write_role(
        tmp_path / "role", {"bad.py": "print('about to fail', flush=True)\nraise SystemExit(7)\n"}
    )
    s = spec(role, entry_point=ProgramEntryPointSpec("python bad.py"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: len(events(agent, s.key, "instance.backoff")) >= 5, 20)
            o = observed(agent, s.key)
            assert o["state"] in ("CyclingRole", "BusyRole", "RestartingRole")
            cycling = [
                e for e in events(agent, s.key, "instance.state") if e["new"] == "CyclingRole"
            ]
            assert cycling and "crash loop" in cycling[0]["reason"]
            assert "exited with code 7" in cycling[0]["reason"]
            delays = [e["delay"] for e in events(agent, s.key, "instance.backoff")][:5]
            assert delays == [0.1, 0.2, 0.4, 0.8, 0.8]
            assert o["last_exit_code"] == 7
            assert "about to fail" in o["log_tail"]
            # the exact history: Ready at start (setReadyOnProcessStart), then the loop
            assert history(agent, s.key)[:11] == [
                "StartingRole>BusyRole",
                "BusyRole>ReadyRole",
                "ReadyRole>RestartingRole",
                "RestartingRole>BusyRole",
                "BusyRole>ReadyRole",
                "ReadyRole>RestartingRole",
                "RestartingRole>BusyRole",
                "BusyRole>ReadyRole",
                "ReadyRole>CyclingRole",  # the third failure in a row: a crash loop
                "CyclingRole>BusyRole",
                "BusyRole>ReadyRole",
            ]

    run(body())


HUNG = {
    "hung.py": """
        from cumulo.sdk import RoleEntryPoint
        class Role(RoleEntryPoint):
            def run(self):
                print("running", flush=True)
                self.stop_requested.wait()
    """
}


def test_sigstopped_role_becomes_unresponsive_and_is_recycled(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    role = write_role(tmp_path / "role", HUNG)
    s = spec(role, entry_point=ProgramEntryPointSpec("python -m cumulo.sdk.run hung:Role"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            assert events(agent, s.key, "sdk.connected")[0]["entry_point"] is True
            pid = observed(agent, s.key)["pid"]
            os.kill(pid, signal.SIGSTOP)
            await wait_for(lambda: events(agent, s.key, "instance.unresponsive"), 10)
            unresponsive = [
                e for e in events(agent, s.key, "instance.state") if e["new"] == "UnresponsiveRole"
            ]
            assert "did not answer its heartbeat" in unresponsive[0]["reason"]
            await wait_for(
                lambda: state_is(agent, s.key, "ReadyRole") and observed(agent, s.key)["pid"] != pid
            )
            await wait_for(lambda: not pid_alive(pid), 5, "the hung process to be killed")

    run(body())


def test_no_orphan_after_kill_9_of_the_main_process(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    files = {
        "parent.py": """
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            print("child", child.pid, flush=True)
            while True:
                time.sleep(1)
        """
    }
    role = write_role(tmp_path / "role", files)
    s = spec(role, entry_point=ProgramEntryPointSpec("python parent.py"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            tail = await wait_for(
                lambda: [x for x in observed(agent, s.key)["log_tail"] if x.startswith("child ")]
            )
            child = int(tail[0].split()[1])
            pid = observed(agent, s.key)["pid"]
            assert pid_alive(child)
            os.kill(pid, signal.SIGKILL)
            await wait_for(lambda: not pid_alive(child), 5, "the orphan to be killed")
            await wait_for(lambda: observed(agent, s.key)["pid"] not in (None, pid))
            assert observed(agent, s.key)["last_exit_code"] == -9

    run(body())


@pytest.mark.skipif(os.geteuid() != 0, reason="memory cgroups need root")
def test_memory_limit_is_enforced(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    marker = shared(data_dir)
    files = {
        "hog.py": f"""
            import pathlib, time
            print("allocating", flush=True)
            blob = bytearray(256 * 1024 * 1024)
            for i in range(0, len(blob), 4096):
                blob[i] = 1
            pathlib.Path({str(marker / "survived")!r}).write_text("yes")
            time.sleep(300)
        """
    }
    role = write_role(tmp_path / "role", files)
    s = spec(
        role,
        entry_point=ProgramEntryPointSpec("python hog.py"),
        limits=LimitsSpec("ExtraSmall", 1, 64),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            exited = await wait_for(lambda: events(agent, s.key, "instance.exited"), 20)
            assert exited[0]["code"] in (-9, 1)  # OOM-killed (cgroup) or MemoryError (rlimit)
            assert not (marker / "survived").exists()
            assert observed(agent, s.key)["limits"] in ("cgroup-v1", "cgroup-v2", "rlimit")

    run(body())


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/sys/fs/cgroup/cpu", os.W_OK),
    reason="cpu cgroups need root",
)
def test_cpu_quota_of_the_vmsize_is_enforced(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    role = write_role(tmp_path / "role", {"spin.py": "while True:\n    pass\n"})
    s = spec(
        role,
        entry_point=ProgramEntryPointSpec("python spin.py"),
        limits=LimitsSpec("Tiny", 0.2, 256),
    )

    def cpu_seconds(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def body() -> None:
        import asyncio
        import time

        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            pid = observed(agent, s.key)["pid"]
            start_cpu, start = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(1.5)
            share = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)
            assert share < 0.35, share  # 0.2 of a core, with scheduling slack
            usage = observed(agent, s.key)["usage"]
            assert 0 < usage["cpu_seconds"] < 2 and 0 < usage["memory_mb"] < 256

    run(body())
