"""The user an instance's processes run as (``executionContext``).

``elevated`` runs as the agent's own user. ``limited`` runs as an unprivileged user when the agent
is root: ``cumulo-role`` (a system user with no home and no shell), created with ``useradd`` the
first time it is needed. When the agent is not root, every instance runs as the agent's user (it
cannot switch users) and the instance's status says so.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from cumulo.errors import InternalError
from cumulo.host import spawner


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


def ensure_role_user(name: str) -> RunAs:
    """The unprivileged user ``name``, created as a system user if it does not exist."""
    if os.geteuid() != 0:
        return current()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        argv = ["useradd", "--system", "--no-create-home", "--user-group"]
        code, output = spawner.run_command([*argv, "--shell", "/usr/sbin/nologin", name])
        if code not in (0, 9):  # 9: already exists (a concurrent agent made it)
            raise InternalError(
                f"Cannot create the unprivileged user '{name}' for limited roles: "
                f"useradd exited {code}: {output.strip()}"
            ) from None
        entry = pwd.getpwnam(name)
    return RunAs(entry.pw_uid, entry.pw_gid, name)


def for_context(context: str, role_user: str) -> RunAs:
    return ensure_role_user(role_user) if context == "limited" else current()
