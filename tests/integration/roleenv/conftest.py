"""Fixtures for the role-environment integration tests: real pip, real npm, real processes.

Expensive builds happen once per session (``greeting_env``, ``node_env``). Caches that an
unprivileged user must read live in a directory made with ``mkdtemp(dir="/tmp")`` and mode 0755,
because pytest's own temporary base is 0700; they are removed at the end.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cumulo.host import roleenv

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "roleenv"


def _load_wheels() -> ModuleType:
    spec = importlib.util.spec_from_file_location("roleenv_wheels", FIXTURES / "wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheels = _load_wheels()


def shared_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def shared_root() -> Iterator[Path]:
    """A directory unprivileged users can enter; removed at the end of the session."""
    path = shared_tempdir("cumulo-roleenv-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local wheelhouse with cumulo-greeting 1.0 and 2.0 (built by hand, no network)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    for version in ("1.0", "2.0"):
        wheels.make_wheel(
            house,
            "cumulo-greeting",
            version,
            {"greeting": f"VERSION = {version!r}\n\ndef main():\n    print('hello', VERSION)\n"},
            console_scripts={"greet": "greeting:main"},
        )
    return house


@pytest.fixture(scope="session")
def offline(wheelhouse: Path) -> roleenv.BuildOptions:
    return roleenv.BuildOptions(
        pip=roleenv.PipOptions(no_index=True, find_links=(str(wheelhouse),))
    )


def _make_role(parent: Path, name: str, files: dict[str, str]) -> Path:
    role = parent / name
    role.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (role / rel).parent.mkdir(parents=True, exist_ok=True)
        (role / rel).write_text(text, encoding="utf-8")
    return role


@pytest.fixture(scope="session")
def shared_cache(shared_root: Path) -> Path:
    """The session's environment cache (reachable by unprivileged users)."""
    return shared_root / "cache"


@pytest.fixture(scope="session")
def greeting_env(
    shared_root: Path, shared_cache: Path, offline: roleenv.BuildOptions
) -> roleenv.Environment:
    """A Python worker role needing cumulo-greeting==1.0, built once from the wheelhouse."""
    role = _make_role(
        shared_root / "roles",
        "GreetingWorker",
        {"requirements.txt": "cumulo-greeting==1.0\n", "worker.py": "import greeting\n"},
    )
    (env,) = roleenv.ensure(role, shared_cache, offline)
    return env


@pytest.fixture(scope="session")
def npm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An npm cache filled the way docs/role-dependencies.md tells an offline machine to:
    ``npm cache add`` (registry metadata + tarball) on a connected machine."""
    cache = tmp_path_factory.mktemp("npm-cache")
    subprocess.run(
        ["npm", "cache", "add", "is-number@7.0.0", "--cache", str(cache)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cache


@pytest.fixture(scope="session")
def node_env(shared_root: Path, shared_cache: Path, npm_cache: Path) -> roleenv.Environment:
    """The Node.js worker fixture's node_modules, from the real npm registry (one download)."""
    role = shared_root / "roles" / "NodeWorker"
    shutil.copytree(FIXTURES / "node-worker", role)
    options = roleenv.BuildOptions(npm=roleenv.NpmOptions(cache_dir=str(npm_cache)))
    (env,) = roleenv.ensure(role, shared_cache, options)
    return env


@pytest.fixture(scope="session")
def make_role() -> Callable[[Path, str, dict[str, str]], Path]:
    """``make_role(parent, name, {relative path: text})`` -> the new role folder."""
    return _make_role


@pytest.fixture
def fresh_cache() -> Iterator[Path]:
    """An empty cache of its own (for exact build counts), reachable by unprivileged users."""
    root = shared_tempdir("cumulo-roleenv-cache-")
    yield root / "cache"
    shutil.rmtree(root, ignore_errors=True)
