"""The role interpreter and the Node.js toolchain: which ones, and what they are.

**The role interpreter** (the Python that role venvs are built on and role processes run) is the
first of:

1. ``BuildOptions.python`` (a deployment/host setting);
2. ``$CUMULO_ROLE_PYTHON``;
3. ``/usr/bin/python3`` (Debian's: world-executable, has the venv module);
4. ``sys.executable`` (the platform's own; fine unless it lives under a home directory that
   unprivileged users cannot enter, like a pyenv python under ``/root``).

It must be runnable by the unprivileged users of ``limited`` roles: a venv's ``bin/python`` is a
symlink to it. The platform's ``.venv`` python is never used for roles.

**pip**: when the platform itself has pip >= 22.3 and the role interpreter is Python >= 3.9, role
venvs are created ``--without-pip`` and the platform's pip installs into them with
``pip --python`` (fast, and roles get no pip of their own to change a shared environment with);
otherwise the venv is created with its bundled pip (ensurepip) and that pip installs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from cumulo.host.roleenv._tools import build_environment, probe_json, probe_text
from cumulo.host.roleenv.digest import NodeToolchain, PythonToolchain
from cumulo.host.roleenv.errors import RoleInterpreterError

SYSTEM_PYTHON = "/usr/bin/python3"
ROLE_PYTHON_VARIABLE = "CUMULO_ROLE_PYTHON"
_MIN_PLATFORM_PIP = (22, 3)

_PROBE = (
    "import importlib.util, json, os, platform, sys, sysconfig;"
    "print(json.dumps({'version': platform.python_version(),"
    "'implementation': sys.implementation.name,"
    "'platform': sysconfig.get_platform(),"
    "'soabi': sysconfig.get_config_var('SOABI') or '',"
    "'realpath': os.path.realpath(sys.executable),"
    "'venv': importlib.util.find_spec('venv') is not None,"
    "'ensurepip': importlib.util.find_spec('ensurepip') is not None}))"
)


def resolve_role_python(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    is_executable: Callable[[str], bool] | None = None,
    fallback: str | None = None,
) -> str:
    """The role interpreter's path, by the rule in this module's docstring (pure given its
    arguments; the defaults read the real environment and file system)."""
    env = os.environ if environ is None else environ
    check = is_executable or (lambda p: os.path.isfile(p) and os.access(p, os.X_OK))
    if explicit:
        return explicit
    from_env = env.get(ROLE_PYTHON_VARIABLE)
    if from_env:
        return from_env
    if check(SYSTEM_PYTHON):
        return SYSTEM_PYTHON
    return fallback or sys.executable


def platform_pip_version() -> tuple[int, ...] | None:
    """The version of the pip installed beside the platform, or None when it has none."""
    try:
        text = metadata.version("pip")
    except metadata.PackageNotFoundError:
        return None
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


_python_cache: dict[tuple[str, int, int, tuple[int, ...] | None], PythonToolchain] = {}


def probe_python(executable: str) -> PythonToolchain:
    """Run the interpreter once to learn its version, platform and ABI (cached per file)."""
    path = executable
    if os.sep not in path:
        found = shutil.which(path)
        if found is None:
            raise RoleInterpreterError(f"The role interpreter '{executable}' is not on PATH.")
        path = found
    try:
        st = os.stat(path)
    except OSError:
        raise RoleInterpreterError(
            f"The role interpreter '{path}' does not exist; set {ROLE_PYTHON_VARIABLE} or the "
            "deployment's role interpreter to a Python 3 that unprivileged users can run."
        ) from None
    pip_version = platform_pip_version()
    key = (path, st.st_mtime_ns, st.st_size, pip_version)
    cached = _python_cache.get(key)
    if cached is not None:
        return cached
    try:
        info = probe_json([path, "-I", "-c", _PROBE], env=build_environment())
    except (OSError, ValueError) as exc:
        raise RoleInterpreterError(f"The role interpreter '{path}' cannot run: {exc}.") from None
    if not info.get("venv"):
        raise RoleInterpreterError(
            f"The role interpreter '{path}' has no venv module (on Debian: apt-get install "
            "python3-venv)."
        )
    version = tuple(int(p) for p in str(info["version"]).split(".")[:2] if p.isdigit())
    if pip_version is not None and pip_version >= _MIN_PLATFORM_PIP and version >= (3, 9):
        installer = "pip " + ".".join(map(str, pip_version)) + " (platform, --python)"
    elif info.get("ensurepip"):
        installer = "pip (bundled with the interpreter)"
    else:
        raise RoleInterpreterError(
            f"The role interpreter '{path}' has no ensurepip and the platform has no usable "
            "pip to install into its environments (on Debian: apt-get install python3-venv)."
        )
    toolchain = PythonToolchain(
        executable=path,
        realpath=str(info["realpath"]),
        version=str(info["version"]),
        implementation=str(info["implementation"]),
        platform=str(info["platform"]),
        soabi=str(info["soabi"]),
        installer=installer,
    )
    _python_cache[key] = toolchain
    return toolchain


def uses_platform_pip(toolchain: PythonToolchain) -> bool:
    return toolchain.installer.endswith("(platform, --python)")


_NODE_PROBE = (
    "JSON.stringify({v: process.version, p: process.platform, a: process.arch,"
    " m: process.versions.modules})"
)
_node_cache: dict[tuple[str, int, str, int], NodeToolchain] = {}


def _which(command: str, what: str) -> str:
    found = command if os.sep in command else shutil.which(command)
    if not found or not os.path.exists(found):
        raise RoleInterpreterError(
            f"{what} '{command}' is not installed on this host; a role with package.json "
            "needs Node.js and npm (on Debian: apt-get install nodejs npm)."
        )
    return found


def probe_node(node: str | None = None, npm: str | None = None) -> NodeToolchain:
    """Learn node's and npm's versions and node's platform and module ABI (cached per file)."""
    node_path = _which(node or "node", "node")
    npm_path = _which(npm or "npm", "npm")
    key = (node_path, os.stat(node_path).st_mtime_ns, npm_path, os.stat(npm_path).st_mtime_ns)
    cached = _node_cache.get(key)
    if cached is not None:
        return cached
    env = build_environment()
    env["PATH"] = os.path.dirname(node_path) + os.pathsep + env["PATH"]
    try:
        info = probe_json([node_path, "-p", _NODE_PROBE], env=env)
        npm_version = probe_text([npm_path, "--version"], env=env, timeout=60.0)
    except (OSError, ValueError) as exc:
        raise RoleInterpreterError(f"node or npm cannot run on this host: {exc}.") from None
    toolchain = NodeToolchain(
        node=node_path,
        node_version=str(info["v"]),
        npm=npm_path,
        npm_version=npm_version.splitlines()[-1] if npm_version else "",
        platform=str(info["p"]),
        arch=str(info["a"]),
        modules_abi=str(info["m"]),
    )
    _node_cache[key] = toolchain
    return toolchain


def node_bin_dir(toolchain: NodeToolchain) -> Path:
    return Path(toolchain.node).parent
