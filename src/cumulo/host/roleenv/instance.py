"""What an instance needs from its role's environments: links in its approot and variables.

``link_into_approot`` makes ``APPROOT/node_modules`` a symlink to the cached, read-only
``node_modules`` (Node resolves ``require`` from the approot through it). ``instance_variables``
gives the variables the host agent merges into the instance's environment before startup tasks
and the entry point run: each environment's ``bin`` first on ``PATH``, ``VIRTUAL_ENV`` for a
Python environment, ``NODE_PATH`` for a Node.js one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cumulo.host.roleenv.builder import Environment
from cumulo.host.roleenv.errors import RoleDependenciesError


def link_into_approot(environments: Iterable[Environment], approot: str | Path) -> None:
    """Point ``approot/node_modules`` at the Node.js environment (replacing an earlier link
    atomically). A real ``node_modules`` directory in the approot is refused, never deleted."""
    root = Path(approot)
    for env in environments:
        if env.node_modules is None:
            continue
        link = root / "node_modules"
        if link.exists() and not link.is_symlink():
            raise RoleDependenciesError(
                f"{link}: a node_modules directory is already in the approot; cumulo links the "
                "built one there, so leave node_modules out of the package."
            )
        staging = root / f".node_modules.{secrets.token_hex(4)}"
        os.symlink(env.node_modules, staging)
        os.replace(staging, link)


def instance_variables(
    environments: Iterable[Environment], base_path: str | None = None
) -> dict[str, str]:
    """Variables for an instance using ``environments``: ``PATH`` (their ``bin`` dirs first,
    then ``base_path``, default ``os.defpath``), ``VIRTUAL_ENV``, ``NODE_PATH``."""
    envs = list(environments)
    variables: dict[str, str] = {}
    path = [str(e.bin_dir) for e in envs]
    path.append(os.defpath if base_path is None else base_path)
    variables["PATH"] = os.pathsep.join(p for p in path if p)
    for env in envs:
        if env.kind == "python":
            variables["VIRTUAL_ENV"] = str(env.path)
        elif env.node_modules is not None:
            variables["NODE_PATH"] = str(env.node_modules)
    return variables
