"""The one place in ``roleenv`` that starts processes: the build tools (pip, npm, venv) and the
toolchain probes. Role processes are started only by the host agent's spawner; these are
root-owned, short-lived build steps with a timeout, their output going to a log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cumulo.host.roleenv.errors import redact

TAIL_LINES = 40
TAIL_CHARS = 4000
_STRIPPED_PREFIXES = ("PIP_", "PYTHON", "NPM_CONFIG_", "VIRTUAL_ENV", "NODE_OPTIONS", "NODE_PATH")


def build_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment pip and npm run in: the host's, without anything that would make the
    result depend on more than the digest covers (PIP_*, PYTHON*, npm_config_*, user configs)."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.upper().startswith(_STRIPPED_PREFIXES)
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no config file at all
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env["npm_config_userconfig"] = os.devnull  # no ~/.npmrc; a role's own .npmrc still applies
    env["npm_config_update_notifier"] = "false"
    env.setdefault("PATH", os.defpath)
    return env


@dataclass(frozen=True)
class ToolResult:
    """How one build tool run ended."""

    returncode: int | None
    """None when it was killed for taking longer than the timeout."""
    tail: str
    timed_out: bool
    seconds: float


def tail_of(path: Path, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of a text file."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * chars))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = "\n".join(data.splitlines()[-lines:])
    return text[-chars:]


def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    log_path: Path,
) -> ToolResult:
    """Run one build step, appending its output to ``log_path``; kill its process group on
    timeout. Never raises for a failing tool: the caller decides."""
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {redact(' '.join(argv))}   (in {cwd})\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"cannot start {argv[0]}: {exc.strerror}\n".encode())
            return ToolResult(127, f"cannot start {argv[0]}: {exc.strerror}", False, 0.0)
        timed_out = False
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
            log.write(f"\nkilled after {timeout:g} s\n".encode())
    return ToolResult(returncode, tail_of(log_path), timed_out, time.monotonic() - started)


def probe_json(argv: Sequence[str], *, env: Mapping[str, str], timeout: float = 30.0) -> Any:
    """Run a short probe that prints one JSON document; raises ``OSError``/``ValueError``."""
    done = subprocess.run(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(message[-1] if message else f"exit status {done.returncode}")
    return json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])


def probe_text(argv: Sequence[str], *, env: Mapping[str, str], timeout: float = 30.0) -> str:
    """Run a short probe and return its stripped standard output; raises on failure."""
    done = subprocess.run(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(message[-1] if message else f"exit status {done.returncode}")
    return done.stdout.decode("utf-8", "replace").strip()
