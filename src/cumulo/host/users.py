"""The users an instance's processes run as (``executionContext``).

``elevated`` runs as the agent's own user. ``limited`` runs, when the agent is root, as the
instance's **own** system user and group (``cumulo-i<n>``, uid = gid from a reserved range; see
``cumulo.host.uidpool`` for the range and how a uid is chosen), made by ``InstanceUsers`` the
first time the instance prepares and deleted when the instance is removed — after its processes
are ended and its files wiped, here and in the world-writable directories (``/tmp``, ``/dev/shm``
…), so a uid handed out again owns nothing. When the agent is not root every instance runs as
the agent's user (it cannot switch users) and the instance's ``user`` says so.

The account database is the record: each account's comment names the agent and the instance, so
an agent that was killed finds its users again (and deletes the ones whose instance is gone).
Creating is optimistic: choose the lowest free uid, ``groupadd``/``useradd`` it; a lost race
with another agent (the id or name became taken) chooses again.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cumulo.errors import InternalError
from cumulo.host import spawner, uidpool

_EXISTS = (4, 9)
"""``useradd``/``groupadd`` exit codes for a uid/gid (4) or a name (9) already in use."""
_ATTEMPTS = 32


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()


def current() -> RunAs:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return RunAs(uid, os.getegid(), name)


class InstanceUsers:
    """The instance users of one host agent (``agent``: its host id + data directory digest)."""

    def __init__(self, uids: uidpool.UidRange, agent: str, sweep_dirs: Iterable[str] = ()) -> None:
        problems = uids.problems()
        if problems:
            raise InternalError(" ".join(problems))
        self.uids = uids
        self.agent = agent
        self.sweep_dirs = tuple(sweep_dirs)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Per-instance users need root; otherwise everything runs as the agent's user."""
        return os.geteuid() == 0

    # -- finding ----------------------------------------------------------------------------
    def owned(self) -> dict[str, RunAs]:
        """instance (directory name) -> its user, for every account this agent made."""
        accounts = ((p.pw_name, p.pw_uid, p.pw_gecos) for p in pwd.getpwall())
        return {
            key: _run_as(slot.name) or RunAs(slot.uid, slot.gid, slot.name)
            for key, slot in uidpool.owned_by(self.agent, accounts).items()
        }

    def find(self, instance: str) -> RunAs | None:
        return self.owned().get(instance)

    # -- making -----------------------------------------------------------------------------
    def for_instance(self, instance: str, previous: RunAs | None = None) -> RunAs:
        """The user of ``instance``: its existing account, else ``previous`` (what its record
        says: made again with the same uid, which owns its files) when that uid is free, else a
        new one. The agent's own user when the agent is not root."""
        if not self.enabled:
            return current()
        with self._lock:
            found = self.find(instance)
            if found is not None:
                return found
            note = uidpool.comment(self.agent, instance)
            skip: set[int] = set()
            if previous is not None and previous.uid in self.uids:
                wanted = uidpool.Slot(self.uids.name(previous.uid), previous.uid)
                ids, names = _taken(self.uids)
                if wanted.uid not in ids and wanted.name not in names and _create(wanted, note):
                    return RunAs(wanted.uid, wanted.gid, wanted.name)
            for _ in range(_ATTEMPTS):
                ids, names = _taken(self.uids)
                slot = uidpool.choose(self.uids, ids, names, skip=skip)
                if slot is None:
                    raise InternalError(
                        f"No uid is free for a new instance user: every uid of "
                        f"{self.uids.first}-{self.uids.first + self.uids.count - 1} is taken "
                        "(remove instances, or give the host agent a larger instance uid range)."
                    )
                if _create(slot, note):
                    return RunAs(slot.uid, slot.gid, slot.name)
                skip.add(slot.uid)  # another agent took it meanwhile: choose again
            raise InternalError(
                f"Cannot make a user for instance '{instance}': {_ATTEMPTS} uids were taken by "
                "others while trying."
            )

    # -- releasing --------------------------------------------------------------------------
    def release(self, instance: str) -> RunAs | None:
        """End every process of ``instance``'s user, delete the files it owns in the
        world-writable directories and its System V IPC objects, then delete the account (and
        group). Call it after the instance's own directory is gone. Returns the user released."""
        if not self.enabled:
            return None
        user = self.find(instance)
        if user is None:
            return None
        if user.uid in (0, os.geteuid()):  # never, but a wrong comment must not cost root
            raise InternalError(f"Refusing to release user '{user.name}': it is uid {user.uid}.")
        kill_processes_of(user.uid)
        for top in self.sweep_dirs:
            remove_files_of(user.uid, Path(top))
        remove_ipc_of(user.uid)
        with self._lock:
            _delete(user.name)
        return user

    def release_strays(self, instances: Iterable[str]) -> list[str]:
        """Release the users of this agent whose instance directory is gone."""
        if not self.enabled:
            return []
        accounts = ((p.pw_name, p.pw_uid, p.pw_gecos) for p in pwd.getpwall())
        owned = uidpool.owned_by(self.agent, accounts)
        gone = uidpool.strays(owned, frozenset(instances))
        for key in sorted(gone):
            self.release(key)
        return sorted(slot.name for slot in gone.values())


def _run_as(name: str) -> RunAs | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return RunAs(entry.pw_uid, entry.pw_gid, name)


def _taken(uids: uidpool.UidRange) -> tuple[set[int], set[str]]:
    """Ids of the range used by any account, group or subordinate id range; every name."""
    ids: set[int] = set()
    names: set[str] = set()
    for p in pwd.getpwall():
        names.add(p.pw_name)
        if p.pw_uid in uids:
            ids.add(p.pw_uid)
    for g in grp.getgrall():
        names.add(g.gr_name)
        if g.gr_gid in uids:
            ids.add(g.gr_gid)
    for path in ("/etc/subuid", "/etc/subgid"):
        for start, count in _subordinate(path):
            low = max(start, uids.first)
            high = min(start + count, uids.first + uids.count)
            ids.update(range(low, high))
    return ids, names


def _subordinate(path: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                out.append((int(parts[1]), int(parts[2])))
    return out


def _create(slot: uidpool.Slot, note: str) -> bool:
    """Make group and user ``slot``; False if its id or name was taken meanwhile."""
    code, out = spawner.run_command(["groupadd", "--gid", str(slot.gid), slot.name])
    if code in _EXISTS:
        return False
    if code != 0:
        raise InternalError(
            f"Cannot create the group '{slot.name}' (gid {slot.gid}) for an instance: "
            f"groupadd exited {code}: {out.strip()}"
        )
    argv = [
        "useradd",
        "--system",
        "--no-create-home",
        "--no-log-init",  # lastlog/faillog are indexed by uid: no huge sparse files
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--uid",
        str(slot.uid),
        "--gid",
        str(slot.gid),
        "--comment",
        note,
        slot.name,
    ]
    code, out = spawner.run_command(argv)
    if code == 0:
        return True
    spawner.run_command(["groupdel", slot.name])
    if code in _EXISTS:
        return False
    raise InternalError(
        f"Cannot create the user '{slot.name}' (uid {slot.uid}) for an instance: "
        f"useradd exited {code}: {out.strip()}"
    )


def _delete(name: str) -> None:
    code, out = spawner.run_command(["userdel", name])
    if code not in (0, 6):  # 6: no such user (deleted already)
        raise InternalError(
            f"Cannot delete the instance user '{name}': userdel exited {code}: {out.strip()}"
        )
    with contextlib.suppress(KeyError):
        grp.getgrnam(name)
        code, out = spawner.run_command(["groupdel", name])
        if code not in (0, 6):
            raise InternalError(
                f"Cannot delete the group '{name}': groupdel exited {code}: {out.strip()}"
            )


# -- what a uid leaves behind ---------------------------------------------------------------
def processes_of(uid: int) -> list[int]:
    """Pids whose real, effective, saved or filesystem uid is ``uid``."""
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    if uid in (int(x) for x in line.split()[1:]):
                        pids.append(int(entry.name))
                    break
    return pids


def kill_processes_of(uid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process of ``uid`` until none is left (processes that left the instance's
    session and cgroup included); raises InternalError if some outlive ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in processes_of(uid) if spawner.proc_state(p) not in (None, "Z", "X")]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise InternalError(
                f"Processes {pids} of uid {uid} are still running {timeout:g} s after SIGKILL."
            )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def remove_files_of(uid: int, top: Path) -> int:
    """Delete what ``uid`` owns under ``top``: in ``top`` itself and inside every directory that
    ``uid`` owns or that anyone may write (mode o+w), the only places it could have made
    entries — not crossing into other filesystems; symlinks are removed, never followed.
    Returns how many entries were removed."""
    try:
        top_dev = os.lstat(top).st_dev
    except OSError:
        return 0
    removed = 0
    owned_dirs: list[tuple[int, str]] = []
    for path, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        depth = path.count(os.sep)
        keep: list[str] = []
        for name in dirs:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != top_dev:
                continue  # a mount point (another filesystem): not ours to sweep
            if st.st_uid == uid:
                owned_dirs.append((depth + 1, os.path.join(path, name)))
                keep.append(name)
            elif st.st_mode & stat.S_IWOTH:
                keep.append(name)
        dirs[:] = keep
        for name in files:
            with contextlib.suppress(OSError):
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_uid == uid:
                    os.unlink(name, dir_fd=dir_fd)
                    removed += 1
    for _depth, path in sorted(owned_dirs, reverse=True):
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                try:
                    os.rmdir(path)
                    removed += 1
                except OSError:  # others wrote into it: keep it, but not as the reusable uid's
                    os.chown(path, 0, 0, follow_symlinks=False)
    return removed


def remove_ipc_of(uid: int) -> None:
    """Remove the System V shared memory, semaphores and message queues ``uid`` owns or made."""
    for kind, flag in (("shm", "-m"), ("sem", "-s"), ("msg", "-q")):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        if not lines:
            continue
        header = lines[0].split()
        try:
            id_col = header.index({"shm": "shmid", "sem": "semid", "msg": "msqid"}[kind])
            uid_cols = [header.index("uid"), header.index("cuid")]
        except ValueError:
            continue
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > max(id_col, *uid_cols) and any(
                fields[c] == str(uid) for c in uid_cols
            ):
                spawner.run_command(["ipcrm", flag, fields[id_col]])
