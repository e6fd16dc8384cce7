"""Each limited instance runs as its own user: one cannot read or write another's approot, temp,
local storage, certificate key or SDK socket; both still import the shared runtime and role
environment; an adopted instance keeps its user; a removed instance's user is released only
after its processes are ended and its files are gone (here and in /tmp, /dev/shm, SysV IPC)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from cumulo.host import localdisk, spawner, uidpool, users
from cumulo.host.agent import HostAgent
from cumulo.state.spec import (
    CertificateSpec,
    EnvVarSpec,
    LocalResourceSpec,
    ProgramEntryPointSpec,
)

from ...certs import issue  # type: ignore[import-not-found]
from .conftest import (
    FAST,
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
from .test_role_dependencies import make_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make instance users")

ROLE = {
    "requirements.txt": "greetlib==1.0\n",
    "w.py": """
        import json, os, pathlib, time
        import greetlib            # the role environment (shared, read-only)
        import cumulo.sdk          # the runtime directory (shared, read-only)
        env = os.environ
        local = pathlib.Path(env["CUMULO_LOCAL_RESOURCE_DATA"])
        for place in (pathlib.Path.cwd(), pathlib.Path(env["TMPDIR"]), local):
            (place / "secret.txt").write_text("mine")
        info = {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "greeting": greetlib.GREETING,
            "sdk": cumulo.sdk.__name__,
            "approot": os.getcwd(),
            "temp": env["TMPDIR"],
            "local": str(local),
            "key": env["CUMULO_CERTIFICATE_SSL_KEY"],
            "socket": env["CUMULO_AGENT_SOCKET"],
        }
        out = pathlib.Path(env["SHARED"]) / (env["WHO"] + ".json")
        out.with_suffix(".tmp").write_text(json.dumps(info))
        out.with_suffix(".tmp").rename(out)
        while True:
            time.sleep(1)
    """,
}

# Run inside one instance (exec) against the paths of another: every attempt's errno name.
TRESPASS = """
import errno, json, os, pathlib, socket, sys
other = json.loads(sys.argv[1])
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def connect(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
p = pathlib.Path
print(json.dumps({
    "read approot": attempt(lambda: (p(other["approot"]) / "w.py").read_text()),
    "list approot": attempt(lambda: os.listdir(other["approot"])),
    "write approot": attempt(lambda: (p(other["approot"]) / "x").write_text("x")),
    "read temp": attempt(lambda: (p(other["temp"]) / "secret.txt").read_text()),
    "write temp": attempt(lambda: (p(other["temp"]) / "x").write_text("x")),
    "read local": attempt(lambda: (p(other["local"]) / "secret.txt").read_text()),
    "write local": attempt(lambda: (p(other["local"]) / "x").write_text("x")),
    "read key": attempt(lambda: p(other["key"]).read_text()),
    "connect socket": attempt(lambda: connect(other["socket"])),
    "read own key": attempt(lambda: p(os.environ["CUMULO_CERTIFICATE_SSL_KEY"]).read_text()),
    "write own local": attempt(
        lambda: (p(os.environ["CUMULO_LOCAL_RESOURCE_DATA"]) / "y").write_text("y")
    ),
}))
"""


def role_spec(source: Path, flags: Path, who: str, service: str, dep: str) -> Any:
    c = issue(f"{who}.example")
    s = spec(
        source,
        deployment_id=dep,
        entry_point=ProgramEntryPointSpec("python w.py"),
        local_resources=(LocalResourceSpec("Data", 5, clean_on_role_recycle=False),),
        certificates=(CertificateSpec("SSL", c.thumbprint, c.pem + c.key_pem),),
        environment=(EnvVarSpec("SHARED", str(flags)), EnvVarSpec("WHO", who)),
    )
    return dataclasses.replace(s, service=service)


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_two_services_instances_cannot_reach_each_other(
    tmp_path: Path, data_dir: Path, host_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_wheel(tmp_path / "wheels")
    monkeypatch.setenv("CUMULO_PIP_FIND_LINKS", str(tmp_path / "wheels"))
    monkeypatch.setenv("CUMULO_PIP_NO_INDEX", "true")
    flags = shared(data_dir)
    source = write_role(tmp_path / "role", ROLE)
    a = role_spec(source, flags, "a", "alpha", "depA")
    b = role_spec(source, flags, "b", "beta", "depB")
    admin = dataclasses.replace(
        role_spec(source, flags, "admin", "alpha", "depA"),
        role="Admin",
        instance_id="Admin_IN_0",
        execution_context="elevated",
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([a, b, admin])
            for s in (a, b, admin):
                await wait_for(lambda s=s: state_is(agent, s.key, "ReadyRole"), 90, s.key)
            infos = {}
            for who in ("a", "b", "admin"):
                f = flags / f"{who}.json"
                await wait_for(f.exists, 15, f"{who}.json")
                infos[who] = json.loads(f.read_text())
            ia, ib = infos["a"], infos["b"]
            # two users, neither root nor each other; uid = gid; the elevated one is root
            assert ia["uid"] != ib["uid"] and 0 not in (ia["uid"], ib["uid"])
            assert (ia["uid"], ib["uid"]) == (ia["gid"], ib["gid"])
            assert infos["admin"]["uid"] == 0 and observed(agent, admin.key)["user"] == "root"
            for s, info in ((a, ia), (b, ib)):
                user = observed(agent, s.key)["user"]
                assert user.startswith("cumulo-i") and pwd.getpwnam(user).pw_uid == info["uid"]
                # both import the shared runtime and the (one) role environment
                assert info["greeting"] == "hi from greetlib" and info["sdk"] == "cumulo.sdk"
            # on disk: private things are the instance's, 0700/0600; the rest the agent's
            for s, info in ((a, ia), (b, ib)):
                if localdisk.available():  # loop-mounted local storage belongs to its user too
                    assert observed(agent, s.key)["local_storage"] == "ext4-loop"
                root = agent.guests[s.key].root
                for d in ("approot", "temp", "local/Data"):
                    st = (root / d).stat()
                    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (info["uid"], 0o700), d
                key = os.stat(info["key"])
                assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (info["uid"], 0o600)
                sock = os.stat(info["socket"])
                assert (sock.st_uid, sock.st_gid, stat.S_IMODE(sock.st_mode)) == (
                    info["uid"],
                    info["gid"],
                    0o660,
                )
                for d, mode in (("", 0o711), ("local", 0o711), ("logs", 0o750)):
                    st = (root / d).stat()
                    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, mode), d
                log = (root / "logs" / "entry.log").stat()
                assert (log.st_uid, log.st_gid, stat.S_IMODE(log.st_mode)) == (
                    0,
                    info["gid"],
                    0o640,
                )
                for private in ("record.json", "spec.json"):
                    st = (root / private).stat()
                    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), private
            # from inside each instance, the other's things are out of reach
            for me, other in ((a, ib), (b, ia)):
                result = await agent.exec(me.key, ["python", "-c", TRESPASS, json.dumps(other)], 30)
                assert result["exit_code"] == 0, result
                tried = json.loads(result["output"].strip().splitlines()[-1])
                mine = {"read own key": "ok", "write own local": "ok"}
                assert tried == {
                    **{k: "EACCES" for k in tried if k not in mine},
                    **mine,
                }, tried
            # the elevated instance (root) is not held back, as on Azure
            result = await agent.exec(admin.key, ["python", "-c", TRESPASS, json.dumps(ia)], 30)
            assert set(json.loads(result["output"].strip().splitlines()[-1]).values()) == {"ok"}
            # ... but even root's connection to another instance's socket is turned away by the
            # peer check (its pid is in none of that instance's sessions)
            await wait_for(
                lambda: any(
                    e["event"] == "sdk.rejected" and e["key"] == a.key for e in agent.events
                ),
                5,
                "the peer check to reject the elevated instance's connection",
            )
            assert not any(e["event"] == "sdk.rejected" and e["key"] == b.key for e in agent.events)

    run(body())


SQUATTER = {
    "w.py": """
        import os, pathlib, time
        print("up", os.getuid(), flush=True)
        while True:
            time.sleep(1)
    """,
}
# what an instance could leave outside its directories: files in /tmp and /dev/shm, a SysV
# shared memory segment, a process that left its session
LITTER = """
import os, subprocess, sys, time
tag = sys.argv[1]
for top in ("/tmp", "/dev/shm"):
    with open(f"{top}/{tag}", "w") as f:
        f.write("left behind")
    os.makedirs(f"{top}/{tag}.d/sub", exist_ok=True)
    open(f"{top}/{tag}.d/sub/f", "w").close()
out = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
print(out.stdout.split()[-1])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
"""


def test_adopted_instances_keep_their_user_and_removal_releases_it(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    source = write_role(tmp_path / "role", SQUATTER)
    s = spec(source, entry_point=ProgramEntryPointSpec("python w.py"))
    tag = f"cumulo-litter-{host_id}"

    async def body() -> None:
        agent = HostAgent(data_dir, FAST, host_id=host_id)
        await agent.start()
        try:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            before = observed(agent, s.key)
            user = pwd.getpwnam(before["user"])
            assert uid_of(before["pid"]) == user.pw_uid
            assert agent.ctx is not None and agent.ctx.users is not None
            root_name = agent.guests[s.key].root.name
            assert user.pw_gecos == f"cumulo {agent.ctx.users.agent} {root_name}"
            record = json.loads((agent.guests[s.key].root / "record.json").read_text())
            assert record["user"] == {
                "name": user.pw_name,
                "uid": user.pw_uid,
                "gid": user.pw_gid,
            }
        finally:
            await agent.close()  # the agent goes away (as after kill -9): instances keep running
        assert pid_alive(before["pid"])

        async with running_agent(data_dir, host_id) as agent:
            await wait_for(lambda: any(e["event"] == "instance.adopted" for e in agent.events))
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            after = observed(agent, s.key)
            assert (after["pid"], after["user"]) == (before["pid"], before["user"])
            assert pwd.getpwnam(after["user"]).pw_uid == user.pw_uid
            # the adopted instance's socket still admits its processes: a fresh SDK connection
            hello = "from cumulo.sdk import RoleEnvironment as R; print(R.current_role_instance.id)"
            r = await agent.exec(s.key, ["python", "-c", hello], 30)
            assert r["output"].strip().splitlines()[-1] == "Worker_IN_0", r
            assert not any(e["event"] == "sdk.rejected" for e in agent.events)

            litter = await agent.exec(s.key, ["python", "-c", LITTER, tag], 30)
            assert litter["exit_code"] == 0, litter
            shm_id = litter["output"].split()[-1]
            left = [Path(f"/tmp/{tag}"), Path(f"/tmp/{tag}.d"), Path(f"/dev/shm/{tag}")]
            assert all(p.exists() for p in left)
            assert f" {shm_id} " in Path("/proc/sysvipc/shm").read_text()

            await agent.apply([])
            await agent.settle()
            removed = next(e for e in agent.events if e["event"] == "instance.removed")
            assert removed["user_released"] == user.pw_name
            assert released_account(user)
            assert not (data_dir / "instances" / root_name).exists()
            assert not any(p.exists() for p in left)
            assert not any(
                line.split()[1] == shm_id
                for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
            )
            assert _processes_of(user.pw_uid) == []

    run(body())


def released_account(user: pwd.struct_passwd) -> bool:
    """The account is gone (or its name already belongs to another instance of another
    agent: tests running at the same time share the machine's range)."""
    try:
        return pwd.getpwnam(user.pw_name).pw_gecos != user.pw_gecos
    except KeyError:
        return True


def _processes_of(uid: int) -> list[int]:
    """Live processes of ``uid`` (zombies wait for the init process to reap them)."""
    return [p for p in users.processes_of(uid) if spawner.proc_state(p) not in (None, "Z", "X")]


def test_an_agent_releases_the_users_it_left_behind(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    """A crash between deleting an instance's directory and its account: the next agent
    releases the account (and never someone else's)."""

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            assert agent.ctx is not None and agent.ctx.users is not None
            mine = agent.ctx.users
            other = users.InstanceUsers(uidpool.UidRange(), f"{host_id}.other", ())
            left = await _in_thread(mine.for_instance, "depX.Gone_IN_0")
            kept = await _in_thread(other.for_instance, "depX.Gone_IN_0")
            assert left.uid != kept.uid
            left_entry, kept_entry = pwd.getpwnam(left.name), pwd.getpwnam(kept.name)
        async with running_agent(data_dir, host_id) as agent:
            released = next(e for e in agent.events if e["event"] == "host.users_released")
            assert released["users"] == [left.name]
            assert released_account(left_entry)
            assert pwd.getpwnam(kept.name).pw_uid == kept.uid  # another agent's: untouched
            await _in_thread(other.release, "depX.Gone_IN_0")
            assert released_account(kept_entry)

    run(body())


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def test_reboot_reimage_and_rebuild_keep_the_user_and_the_disk_rules(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    source = write_role(tmp_path / "role", SQUATTER)
    s = spec(
        source,
        entry_point=ProgramEntryPointSpec("python w.py"),
        local_resources=(LocalResourceSpec("Data", 5, clean_on_role_recycle=False),),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            first = observed(agent, s.key)
            uid = pwd.getpwnam(first["user"]).pw_uid
            pid = first["pid"]
            for op in ("reboot", "reimage", "rebuild"):
                agent.operate(s.key, op)
                await wait_for(
                    lambda pid=pid: (
                        state_is(agent, s.key, "ReadyRole")
                        and observed(agent, s.key)["pid"] not in (None, pid)
                    ),
                    20,
                    f"ready after {op}",
                )
                now = observed(agent, s.key)
                pid = now["pid"]
                assert now["user"] == first["user"] and uid_of(pid) == uid, op
                root = agent.guests[s.key].root
                for d in ("approot", "approot/w.py", "temp", "local/Data"):
                    st = (root / d).stat()
                    mode = 0o700 if d != "approot/w.py" else stat.S_IMODE(st.st_mode)
                    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
                        uid,
                        uid,
                        mode,
                    ), (op, d)
                for d in ("", "local", "logs"):
                    assert (root / d).stat().st_uid == 0, (op, d)

    run(body())


def test_an_adopted_process_running_as_another_uid_starts_again_as_its_user(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    """As after an upgrade from the shared ``cumulo-role`` user: the agent cannot find the
    instance's user (here: its account no longer says it is this instance's), so it makes a new
    one; the process, running as the old uid, is ended and started again as the new user, with
    the instance's files given to it."""
    source = write_role(tmp_path / "role", SQUATTER)
    s = spec(
        source,
        entry_point=ProgramEntryPointSpec("python w.py"),
        local_resources=(LocalResourceSpec("Data", 5, clean_on_role_recycle=False),),
    )

    async def body() -> None:
        agent = HostAgent(data_dir, FAST, host_id=host_id)
        await agent.start()
        try:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            before = observed(agent, s.key)
            root = agent.guests[s.key].root
        finally:
            await agent.close()
        old = pwd.getpwnam(before["user"])
        code, out = spawner.run_command(["usermod", "--comment", "not cumulo's", old.pw_name])
        assert code == 0, out
        try:
            async with running_agent(data_dir, host_id) as agent:
                await wait_for(
                    lambda: (
                        state_is(agent, s.key, "ReadyRole")
                        and observed(agent, s.key)["pid"] not in (None, before["pid"])
                    ),
                    20,
                    "the instance started again",
                )
                after = observed(agent, s.key)
                new = pwd.getpwnam(after["user"])
                assert new.pw_uid != old.pw_uid and uid_of(after["pid"]) == new.pw_uid
                assert not pid_alive(before["pid"])
                failed = next(e for e in agent.events if e["event"] == "instance.adopt_failed")
                assert (
                    f"it ran as uid {old.pw_uid}, not as its user '{new.pw_name}'"
                    in (failed["reason"])
                )
                for d in ("approot", "approot/w.py", "temp", "local/Data"):
                    assert (root / d).stat().st_uid == new.pw_uid, d
        finally:
            users.kill_processes_of(old.pw_uid)
            spawner.run_command(["userdel", old.pw_name])
            spawner.run_command(["groupdel", old.pw_name])

    run(body())
