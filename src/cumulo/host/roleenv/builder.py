"""The builder: ``ensure`` a role's environments exist in the cache, building each at most once.

See the package docstring for the API and ``layout.py`` for the cache layout. The protocol for one
environment (``kind``, ``digest``):

1. If ``<kind>/<digest>`` is published (a symlink to a directory holding ``cumulo-env.json``),
   use it: no lock is taken.
2. Otherwise take ``locks/<kind>-<digest>.lock`` (``fcntl.flock``, exclusive; other threads,
   processes and host agents sharing the cache wait here), look again (someone may have built it
   while we waited), remove leftovers of earlier failed or interrupted attempts, build into
   ``<digest>-<nonce>/``, make it read-only to everyone but the owner (dirs 0755, files 0644 or
   0755), write ``cumulo-env.json``, and publish it by renaming a symlink onto ``<digest>``.
3. On any failure remove the attempt's directory, append a ``failed`` line to ``builds.jsonl``
   and raise ``EnvironmentBuildError`` with the tail of pip's/npm's output (the full output stays
   in ``logs/``). Nothing is published, so nothing half-built is ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.errors import CumuloError
from cumulo.host.roleenv._tools import build_environment, run_tool
from cumulo.host.roleenv.detect import (
    NodeRequirements,
    PythonRequirements,
    RoleRequirements,
    detect,
)
from cumulo.host.roleenv.digest import NodeToolchain, PythonToolchain, node_digest, python_digest
from cumulo.host.roleenv.errors import EnvironmentBuildError, RoleDependenciesError, redact
from cumulo.host.roleenv.layout import KINDS, MARKER, CacheLayout, is_attempt_of
from cumulo.host.roleenv.options import BuildOptions
from cumulo.host.roleenv.retry import RetryPolicy, RetryState
from cumulo.host.roleenv.toolchain import (
    probe_node,
    probe_python,
    resolve_role_python,
    uses_platform_pip,
)
from cumulo.log import get_logger

DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755
PYPROJECT_REQUIREMENTS = "cumulo-requirements.txt"


@dataclass(frozen=True)
class Environment:
    """A built, published, read-only environment."""

    kind: str
    """``python`` or ``node``."""
    path: Path
    """The environment's directory (a venv, or the folder holding ``node_modules``); it never
    moves while it exists."""
    bin_dir: Path
    """What goes first on the instance's PATH: the venv's ``bin`` or ``node_modules/.bin``."""
    digest: str
    built_now: bool
    """True when this call built it; False when it was already in the cache (or another caller
    built it while this one waited)."""

    @property
    def node_modules(self) -> Path | None:
        return self.path / "node_modules" if self.kind == "node" else None


@dataclass(frozen=True)
class PlannedEnvironment:
    """One environment a role needs, with its digest, before anything is built."""

    kind: str
    digest: str
    requirements: PythonRequirements | NodeRequirements
    toolchain: PythonToolchain | NodeToolchain


@dataclass(frozen=True)
class BuildRecord:
    """One line of ``builds.jsonl``."""

    time: float
    kind: str
    digest: str
    role: str
    outcome: str
    """``built`` or ``failed``."""
    seconds: float
    pid: int
    path: str | None = None
    error: str | None = None


# ------------------------------------------------------------------------------------------
# planning


def _role_name(role_dir: Path, options: BuildOptions) -> str:
    return options.role or role_dir.resolve().name


def plan(
    role_dir: str | Path,
    options: BuildOptions | None = None,
    *,
    requirements: RoleRequirements | None = None,
) -> tuple[PlannedEnvironment, ...]:
    """What ``role_dir`` needs and each environment's digest (probes toolchains, builds nothing).

    The controller/host can compare digests of the running and the new deployment: equal digests
    mean the upgrade reuses the environments."""
    opts = options or BuildOptions()
    req = requirements or detect(role_dir)
    planned: list[PlannedEnvironment] = []
    if req.python is not None:
        py = probe_python(resolve_role_python(opts.python))
        planned.append(
            PlannedEnvironment("python", python_digest(req.python, py, opts.pip), req.python, py)
        )
    if req.node is not None:
        nd = probe_node(opts.node, opts.npm_command)
        planned.append(
            PlannedEnvironment("node", node_digest(req.node, nd, opts.npm), req.node, nd)
        )
    return tuple(planned)


# ------------------------------------------------------------------------------------------
# cache helpers


def _published(layout: CacheLayout, kind: str, digest: str) -> Path | None:
    link = layout.entry(kind, digest)
    if not link.is_symlink():
        return None
    target = link.resolve()
    if (target / MARKER).is_file():
        return target
    return None


def _environment(kind: str, path: Path, digest: str, built_now: bool) -> Environment:
    bin_dir = path / "bin" if kind == "python" else path / "node_modules" / ".bin"
    return Environment(kind, path, bin_dir, digest, built_now)


def _make_directories(layout: CacheLayout) -> None:
    for directory in layout.directories:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            # Build output is for the operator, not for every limited role on the host.
            os.chmod(directory, 0o700 if directory.name == "logs" else DIR_MODE)


@contextlib.contextmanager
def _locked(path: Path, log: Any) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("roleenv.waiting", lock=str(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _sweep_attempts(layout: CacheLayout, kind: str, digest: str) -> None:
    """Remove what failed or interrupted builds of ``digest`` left (under its lock)."""
    kind_dir = layout.kind_dir(kind)
    for name in os.listdir(kind_dir):
        if is_attempt_of(name, digest):
            _remove(kind_dir / name)
    link = layout.entry(kind, digest)
    if link.is_symlink() and _published(layout, kind, digest) is None:
        link.unlink()


KEEP_LOGS = 4
"""Logs of earlier attempts kept per environment (a build that keeps failing makes one per try)."""


def trim_logs(layout: CacheLayout, kind: str, digest: str, keep: int = KEEP_LOGS) -> None:
    """Keep only the ``keep`` newest attempt logs of one environment (under its lock)."""
    logs_dir = layout.root / "logs"
    if not logs_dir.is_dir():
        return
    prefix = f"{kind}-{digest}-"
    logs = [p for p in logs_dir.iterdir() if p.name.startswith(prefix) and p.suffix == ".log"]
    logs.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


def normalize_permissions(root: Path) -> None:
    """Directories 0755, executables 0755, other files 0644: readable by all, writable by none
    but the owner (the builder). Symlinks are left as they are."""
    os.chmod(root, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, DIR_MODE)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, EXEC_MODE if st.st_mode & 0o111 else FILE_MODE)


def _append_record(layout: CacheLayout, record: BuildRecord) -> None:
    line = (json.dumps(asdict(record), sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(layout.build_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, line)  # one O_APPEND write per record: lines never interleave
    finally:
        os.close(fd)


def read_build_log(cache_root: str | Path) -> list[BuildRecord]:
    """Every build attempt recorded under ``cache_root``, oldest first."""
    path = CacheLayout(Path(cache_root)).build_log
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            records.append(BuildRecord(**json.loads(line)))
    return records


def build_count(
    cache_root: str | Path, *, kind: str | None = None, digest: str | None = None
) -> int:
    """How many environments were built (successfully) under ``cache_root``."""
    return sum(
        1
        for r in read_build_log(cache_root)
        if r.outcome == "built"
        and (kind is None or r.kind == kind)
        and (digest is None or r.digest == digest)
    )


def _unreachable(path: Path, what: str) -> str | None:
    """Why unprivileged users cannot reach ``path`` (None when they can)."""
    for directory in (path, *path.parents) if path.is_dir() else path.parents:
        try:
            mode = os.stat(directory).st_mode
        except OSError as exc:
            return f"{what} {path}: {directory} cannot be examined ({exc.strerror})."
        if not mode & stat.S_IXOTH:
            return (
                f"{what} {path} is not reachable by unprivileged users: {directory} has mode "
                f"{stat.S_IMODE(mode):04o} (others may not enter it)."
            )
    return None


def check_shared_access(cache_root: str | Path, options: BuildOptions | None = None) -> None:
    """Raise ``RoleDependenciesError`` unless the unprivileged users of ``limited`` roles can
    use what ``ensure`` builds: the cache root and every directory above it must be searchable
    (x) by others, and so must the role interpreter (a venv's ``bin/python`` links to it). The
    host agent calls this before it runs a ``limited`` role."""
    problems = []
    cache_problem = _unreachable(Path(cache_root).absolute(), "The environment cache")
    if cache_problem:
        problems.append(
            cache_problem + " Put the cache outside such directories (e.g. /var/lib/cumulo)."
        )
    interpreter = Path(resolve_role_python((options or BuildOptions()).python)).absolute()
    real = interpreter.resolve()
    # Both the path venvs link to and the file it finally names must be reachable.
    python_problem = _unreachable(interpreter, "The role interpreter") or _unreachable(
        real, "The role interpreter"
    )
    if python_problem is None and real.exists() and not os.stat(real).st_mode & stat.S_IXOTH:
        python_problem = f"The role interpreter {real} is not executable by others."
    if python_problem:
        problems.append(
            python_problem + " Set CUMULO_ROLE_PYTHON to a Python such as /usr/bin/python3."
        )
    if problems:
        raise RoleDependenciesError(" ".join(problems))


def prune(cache_root: str | Path, keep: Iterable[str]) -> list[str]:
    """Remove every published environment whose digest is not in ``keep`` (the digests some
    deployment still uses), each under its lock; returns the removed digests. The caller must
    not prune an environment a running instance uses."""
    layout = CacheLayout(Path(cache_root).absolute())
    wanted = set(keep)
    removed: list[str] = []
    log = get_logger()
    for kind in KINDS:
        kind_dir = layout.kind_dir(kind)
        if not kind_dir.is_dir():
            continue
        for entry in sorted(kind_dir.iterdir()):
            digest = entry.name
            if digest.startswith(".") or not entry.is_symlink() or digest in wanted:
                continue
            with _locked(layout.lock(kind, digest), log):
                if entry.is_symlink():
                    target = entry.resolve()
                    entry.unlink()
                    _remove(target)
                    _sweep_attempts(layout, kind, digest)
                    removed.append(digest)
                    log.info("roleenv.pruned", kind=kind, digest=digest)
    return removed


# ------------------------------------------------------------------------------------------
# building


def _fail(
    planned: PlannedEnvironment,
    role: str,
    command: list[str],
    result_code: int | None,
    tail: str,
    log_path: Path,
    reason: str | None = None,
) -> EnvironmentBuildError:
    return EnvironmentBuildError(
        role=role,
        kind=planned.kind,
        digest=planned.digest,
        command=command,
        returncode=result_code,
        output_tail=tail,
        log_path=str(log_path),
        reason=reason,
    )


def _run(
    planned: PlannedEnvironment,
    role: str,
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    options: BuildOptions,
    log_path: Path,
) -> None:
    result = run_tool(argv, cwd=cwd, env=env, timeout=options.timeout_seconds, log_path=log_path)
    if result.timed_out:
        raise _fail(
            planned,
            role,
            argv,
            None,
            result.tail,
            log_path,
            reason=f"it took longer than {options.timeout_seconds:g} s and was stopped",
        )
    if result.returncode != 0:
        raise _fail(planned, role, argv, result.returncode, result.tail, log_path)


def _build_python(
    planned: PlannedEnvironment,
    role: str,
    role_dir: Path,
    target: Path,
    options: BuildOptions,
    log_path: Path,
) -> None:
    req = planned.requirements
    toolchain = planned.toolchain
    assert isinstance(req, PythonRequirements) and isinstance(toolchain, PythonToolchain)
    env = build_environment()
    platform_pip = uses_platform_pip(toolchain)
    venv = [toolchain.executable, "-m", "venv"]
    if platform_pip:
        venv.append("--without-pip")
    _run(
        planned,
        role,
        [*venv, str(target)],
        cwd=role_dir,
        env=env,
        options=options,
        log_path=log_path,
    )
    if req.source == "pyproject.toml":
        if not req.dependencies:
            return
        requirements_file = target / PYPROJECT_REQUIREMENTS
        requirements_file.write_text("\n".join(req.dependencies) + "\n", encoding="utf-8")
    else:
        requirements_file = role_dir / "requirements.txt"
    python = str(target / "bin" / "python")
    pip = (
        [sys.executable, "-m", "pip", "--python", python] if platform_pip else [python, "-m", "pip"]
    )
    install = [
        *pip,
        "install",
        "--no-warn-script-location",
        "--progress-bar",
        "off",
        *options.pip.arguments(),
        "-r",
        str(requirements_file),
    ]
    _run(planned, role, install, cwd=role_dir, env=env, options=options, log_path=log_path)


def _without_root_scripts(package_json: bytes) -> bytes:
    """package.json without its ``scripts``: the role's own lifecycle scripts (postinstall,
    prepare, ...) would run in the shared environment's folder without the role's files; such
    steps belong in startup tasks. Dependencies' install scripts still run."""
    document = json.loads(package_json.decode("utf-8-sig"))
    if not isinstance(document, dict) or "scripts" not in document:
        return package_json
    del document["scripts"]
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _build_node(
    planned: PlannedEnvironment,
    role: str,
    target: Path,
    options: BuildOptions,
    log_path: Path,
) -> None:
    req = planned.requirements
    toolchain = planned.toolchain
    assert isinstance(req, NodeRequirements) and isinstance(toolchain, NodeToolchain)
    target.mkdir()
    for source in req.files:
        content = source.content
        if source.path == "package.json":
            content = _without_root_scripts(content)
        (target / source.path).write_bytes(content)
    env = build_environment()
    env["PATH"] = str(Path(toolchain.node).parent) + os.pathsep + env["PATH"]
    verb = "ci" if req.lock is not None else "install"
    argv = [toolchain.npm, verb, *options.npm.arguments()]
    try:
        _run(planned, role, argv, cwd=target, env=env, options=options, log_path=log_path)
    finally:
        # A role's .npmrc may hold a registry token: it served the build, and must not stay
        # in a directory every limited role can read.
        (target / ".npmrc").unlink(missing_ok=True)
    (target / "node_modules").mkdir(exist_ok=True)


def _write_marker(
    target: Path,
    planned: PlannedEnvironment,
    role_dir: Path,
    role: str,
    options: BuildOptions,
    seconds: float,
) -> None:
    document = {
        "kind": planned.kind,
        "digest": planned.digest,
        "built_for": {"role": role, "role_dir": str(role_dir)},
        "declaration": [f.path for f in planned.requirements.files],
        "toolchain": asdict(planned.toolchain),
        "options": json.loads(
            redact(json.dumps(asdict(options.pip if planned.kind == "python" else options.npm)))
        ),
        "built_at": time.time(),
        "seconds": round(seconds, 3),
    }
    (target / MARKER).write_text(
        json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _publish(layout: CacheLayout, kind: str, digest: str, nonce: str, target: Path) -> None:
    staging = layout.staging_link(kind, digest, nonce)
    os.symlink(target.name, staging)
    os.replace(staging, layout.entry(kind, digest))
    with contextlib.suppress(OSError):  # durability only: the rename itself has happened
        dir_fd = os.open(layout.kind_dir(kind), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _ensure_planned(
    planned: PlannedEnvironment,
    role_dir: Path,
    layout: CacheLayout,
    options: BuildOptions,
) -> Environment:
    role = _role_name(role_dir, options)
    log = get_logger(role=role).bind(kind=planned.kind, digest=planned.digest)
    found = _published(layout, planned.kind, planned.digest)
    if found is not None:
        log.debug("roleenv.reused", path=str(found))
        return _environment(planned.kind, found, planned.digest, False)
    _make_directories(layout)
    with _locked(layout.lock(planned.kind, planned.digest), log):
        found = _published(layout, planned.kind, planned.digest)
        if found is not None:
            log.info("roleenv.reused", path=str(found), waited=True)
            return _environment(planned.kind, found, planned.digest, False)
        _sweep_attempts(layout, planned.kind, planned.digest)
        trim_logs(layout, planned.kind, planned.digest)
        nonce = secrets.token_hex(4)
        target = layout.build_dir(planned.kind, planned.digest, nonce)
        log_path = layout.log(planned.kind, planned.digest, nonce)
        started = time.monotonic()
        log.info("roleenv.build.started", path=str(target), log=str(log_path))
        try:
            if planned.kind == "python":
                _build_python(planned, role, role_dir, target, options, log_path)
            else:
                _build_node(planned, role, target, options, log_path)
            seconds = time.monotonic() - started
            _write_marker(target, planned, role_dir, role, options, seconds)
            normalize_permissions(target)
            os.chmod(log_path, FILE_MODE)
            _publish(layout, planned.kind, planned.digest, nonce, target)
        except BaseException as exc:
            _remove(target)
            _remove(layout.staging_link(planned.kind, planned.digest, nonce))
            seconds = time.monotonic() - started
            message = exc.message if isinstance(exc, CumuloError) else repr(exc)
            with contextlib.suppress(OSError):
                _append_record(
                    layout,
                    BuildRecord(
                        time.time(),
                        planned.kind,
                        planned.digest,
                        role,
                        "failed",
                        round(seconds, 3),
                        os.getpid(),
                        None,
                        message.splitlines()[0],
                    ),
                )
            log.warning("roleenv.build.failed", seconds=round(seconds, 3), error=message)
            raise
        _append_record(
            layout,
            BuildRecord(
                time.time(),
                planned.kind,
                planned.digest,
                role,
                "built",
                round(seconds, 3),
                os.getpid(),
                str(target),
            ),
        )
        log.info("roleenv.build.done", path=str(target), seconds=round(seconds, 3))
        return _environment(planned.kind, target, planned.digest, True)


def ensure(
    role_dir: str | Path,
    cache_root: str | Path,
    options: BuildOptions | None = None,
) -> tuple[Environment, ...]:
    """Make sure every environment ``role_dir`` declares is built in ``cache_root``; return them
    (Python first, then Node.js; empty when the role declares nothing). Blocking: call it from a
    thread (``asyncio.to_thread``) in async code. Raises ``RoleDependenciesError`` (bad
    declaration, not retried), ``EnvironmentBuildError`` (pip/npm failed, retry with backoff) or
    ``RoleInterpreterError`` (toolchain missing on this host)."""
    opts = options or BuildOptions()
    root = Path(role_dir).absolute()
    req = detect(root)
    log = get_logger(role=_role_name(root, opts))
    for note in req.notes:
        log.info("roleenv.note", note=note)
    layout = CacheLayout(Path(cache_root).absolute())
    return tuple(
        _ensure_planned(planned, root, layout, opts)
        for planned in plan(root, opts, requirements=req)
    )


def lookup(
    role_dir: str | Path,
    cache_root: str | Path,
    options: BuildOptions | None = None,
) -> tuple[Environment, ...] | None:
    """The role's environments if all are already built, else None (builds nothing)."""
    layout = CacheLayout(Path(cache_root).absolute())
    found = []
    for planned in plan(role_dir, options):
        path = _published(layout, planned.kind, planned.digest)
        if path is None:
            return None
        found.append(_environment(planned.kind, path, planned.digest, False))
    return tuple(found)


# ------------------------------------------------------------------------------------------
# a whole package, and retries


@dataclass(frozen=True)
class PackageEnvironments:
    """The outcome of preparing every role of a package."""

    environments: Mapping[str, tuple[Environment, ...]]
    """Per role that succeeded, its environments."""
    failures: Mapping[str, CumuloError]
    """Per role that failed, why (a ``RoleDependenciesError`` or ``EnvironmentBuildError``…)."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise the first failure (by role name) when there is one."""
        if self.failures:
            raise self.failures[sorted(self.failures)[0]]


def ensure_package(
    roles: Mapping[str, str | Path],
    cache_root: str | Path,
    options: BuildOptions | None = None,
    *,
    role_options: Mapping[str, BuildOptions] | None = None,
) -> PackageEnvironments:
    """``ensure`` every role of a package (role name -> role folder), before any instance of
    the new deployment or upgrade is stopped. Roles with equal digests share one build. Every
    role is attempted; failures are collected, not raised."""
    base = options or BuildOptions()
    built: dict[str, tuple[Environment, ...]] = {}
    failures: dict[str, CumuloError] = {}
    for name in sorted(roles):
        opts = (role_options or {}).get(name, base)
        if opts.role is None:
            opts = replace(opts, role=name)
        try:
            built[name] = ensure(roles[name], cache_root, opts)
        except CumuloError as exc:
            failures[name] = exc
    return PackageEnvironments(built, failures)


async def ensure_retrying(
    role_dir: str | Path,
    cache_root: str | Path,
    options: BuildOptions | None = None,
    *,
    policy: RetryPolicy | None = None,
    clock: Clock | None = None,
    on_failure: Callable[[EnvironmentBuildError, RetryState], None] | None = None,
    build: Callable[..., tuple[Environment, ...]] = ensure,
) -> tuple[Environment, ...]:
    """``ensure`` in a worker thread, retrying ``EnvironmentBuildError`` with ``policy``'s
    backoff (``on_failure`` sees each failure and the new state: set the deployment's status
    there). Other errors are raised at once; after ``max_attempts`` the last error is raised."""
    pol = policy or RetryPolicy()
    clk = clock or SystemClock()
    state = RetryState()
    log = get_logger(role=(options.role if options else None) or Path(role_dir).name)
    while True:
        try:
            return await asyncio.to_thread(build, role_dir, cache_root, options)
        except EnvironmentBuildError as exc:
            state = pol.after_failure(state, clk.monotonic(), exc.message.splitlines()[0])
            if on_failure is not None:
                on_failure(exc, state)
            if state.gave_up or state.next_attempt_at is None:
                log.error("roleenv.build.gave_up", failures=state.failures)
                raise
            delay = max(0.0, state.next_attempt_at - clk.monotonic())
            log.warning("roleenv.build.retrying", failures=state.failures, delay=delay)
            await clk.sleep(delay)
