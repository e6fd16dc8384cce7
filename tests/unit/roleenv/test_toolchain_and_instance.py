"""The role interpreter rule, toolchain probes, instance variables and approot links."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from cumulo.clock import FakeClock
from cumulo.host import roleenv
from cumulo.host.roleenv._tools import build_environment, run_tool
from cumulo.host.roleenv.errors import redact
from cumulo.host.roleenv.toolchain import probe_python, resolve_role_python


def test_the_role_interpreter_rule() -> None:
    yes = lambda _p: True  # noqa: E731
    no = lambda _p: False  # noqa: E731
    env = {"CUMULO_ROLE_PYTHON": "/opt/py/bin/python3"}
    assert resolve_role_python("/x/python", environ=env, is_executable=yes) == "/x/python"
    assert resolve_role_python(None, environ=env, is_executable=yes) == "/opt/py/bin/python3"
    assert resolve_role_python(None, environ={}, is_executable=yes) == "/usr/bin/python3"
    assert resolve_role_python(None, environ={}, is_executable=no, fallback="/f") == "/f"
    assert resolve_role_python(None, environ={}, is_executable=no) == sys.executable


def test_probing_the_role_interpreter() -> None:
    toolchain = probe_python(sys.executable)
    assert toolchain.version == ".".join(map(str, sys.version_info[:3]))
    assert toolchain.implementation == "cpython"
    assert probe_python(sys.executable) is toolchain  # cached


def test_a_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(roleenv.RoleInterpreterError, match="does not exist; set CUMULO_ROLE"):
        probe_python(str(tmp_path / "python9"))


def test_build_tools_do_not_inherit_pip_or_npm_settings() -> None:
    env = build_environment(
        {
            "PATH": "/bin",
            "PIP_INDEX_URL": "http://x",
            "npm_config_registry": "http://y",
            "PYTHONPATH": "/z",
            "VIRTUAL_ENV": "/v",
            "HTTPS_PROXY": "http://proxy",
        }
    )
    assert "PIP_INDEX_URL" not in env and "npm_config_registry" not in env
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["HTTPS_PROXY"] == "http://proxy"
    assert env["PIP_CONFIG_FILE"] == os.devnull


def test_a_build_step_that_hangs_is_killed(tmp_path: Path) -> None:
    result = run_tool(
        [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"],
        cwd=tmp_path,
        env=build_environment(),
        timeout=0.5,
        log_path=tmp_path / "log",
    )
    assert result.timed_out and result.returncode is None
    assert "working" in result.tail and "killed after 0.5 s" in result.tail
    assert result.seconds < 30


def env_of(kind: str, path: Path) -> roleenv.Environment:
    bin_dir = path / "bin" if kind == "python" else path / "node_modules" / ".bin"
    return roleenv.Environment(kind, path, bin_dir, "d1", False)


def test_instance_variables_put_environments_first_on_path() -> None:
    py = env_of("python", Path("/c/python/d1-aa"))
    node = env_of("node", Path("/c/node/d2-bb"))
    assert roleenv.instance_variables([py, node], "/usr/bin:/bin") == {
        "PATH": "/c/python/d1-aa/bin:/c/node/d2-bb/node_modules/.bin:/usr/bin:/bin",
        "VIRTUAL_ENV": "/c/python/d1-aa",
        "NODE_PATH": "/c/node/d2-bb/node_modules",
    }
    assert roleenv.instance_variables([], "/usr/bin") == {"PATH": "/usr/bin"}


def test_linking_node_modules_into_an_approot(tmp_path: Path) -> None:
    first = env_of("node", tmp_path / "node" / "d1-aa")
    second = env_of("node", tmp_path / "node" / "d2-bb")
    approot = tmp_path / "approot"
    approot.mkdir()
    roleenv.link_into_approot([first], approot)
    assert os.readlink(approot / "node_modules") == str(first.node_modules)
    roleenv.link_into_approot([second], approot)
    assert os.readlink(approot / "node_modules") == str(second.node_modules)
    roleenv.link_into_approot([env_of("python", tmp_path / "py")], approot)  # nothing to link
    assert sorted(p.name for p in approot.iterdir()) == ["node_modules"]
    (approot / "node_modules").unlink()
    (approot / "node_modules").mkdir()
    with pytest.raises(roleenv.RoleDependenciesError, match="already in the approot"):
        roleenv.link_into_approot([first], approot)


def _build_error() -> roleenv.EnvironmentBuildError:
    return roleenv.EnvironmentBuildError(
        role="Web",
        kind="python",
        digest="d1",
        command=["pip", "install"],
        returncode=1,
        output_tail="ERROR: index unreachable",
        log_path="/c/logs/x.log",
    )


def test_the_build_error_is_one_clear_message() -> None:
    err = _build_error()
    assert err.message == (
        "Building the python environment of role 'Web' failed: pip exited with status 1 "
        "(environment d1; command: pip install). Full output: /c/logs/x.log.\n"
        "Last lines of pip's output:\nERROR: index unreachable"
    )
    assert err.http_status == 503 and err.code == "RoleEnvironmentBuildFailed"


def test_ensure_retrying_backs_off_until_the_build_succeeds() -> None:
    clock = FakeClock()
    calls: list[float] = []
    done = (env_of("python", Path("/c/python/d1-aa")),)

    def flaky(_role: object, _cache: object, _options: object) -> tuple[roleenv.Environment, ...]:
        calls.append(clock.monotonic())
        if len(calls) < 4:
            raise _build_error()
        return done

    policy = roleenv.RetryPolicy(initial_delay=5, multiplier=2, max_delay=15)
    result = asyncio.run(
        roleenv.ensure_retrying("/r", "/c", policy=policy, clock=clock, build=flaky)
    )
    assert result == done
    assert clock.slept == [5, 10, 15]
    assert [c - calls[0] for c in calls] == [0, 5, 15, 30]


def test_ensure_retrying_does_not_retry_input_errors() -> None:
    clock = FakeClock()

    def bad(_role: object, _cache: object, _options: object) -> tuple[roleenv.Environment, ...]:
        raise roleenv.RoleDependenciesError("requirements.txt:1: nonsense")

    with pytest.raises(roleenv.RoleDependenciesError):
        asyncio.run(roleenv.ensure_retrying("/r", "/c", clock=clock, build=bad))
    assert clock.slept == []


def test_credentials_in_urls_never_reach_messages() -> None:
    err = roleenv.EnvironmentBuildError(
        role="Web",
        kind="python",
        digest="d1",
        command=["pip", "--index-url", "https://me:s3cret@pypi.corp.test/simple"],
        returncode=1,
        output_tail="Looking in indexes: https://me:s3cret@pypi.corp.test/simple",
        log_path=None,
    )
    assert "s3cret" not in err.message and "s3cret" not in err.output_tail
    assert "https://***@pypi.corp.test/simple" in err.message
    assert redact("see git+ssh://git@host/x and https://host/y") == (
        "see git+ssh://***@host/x and https://host/y"
    )
