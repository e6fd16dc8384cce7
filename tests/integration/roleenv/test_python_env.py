"""Python role environments with real pip: built once, shared, read-only, usable by `limited`."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cumulo.clock import FakeClock
from cumulo.host import roleenv
from cumulo.host.roleenv.layout import is_attempt_of

UNPRIVILEGED = "nobody"
MakeRole = Callable[[Path, str, dict[str, str]], Path]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")


def run_as_unprivileged(
    argv: list[str], env: roleenv.Environment, cwd: str = "/tmp"
) -> subprocess.CompletedProcess[str]:
    variables = roleenv.instance_variables([env], "/usr/bin:/bin")
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**variables, "HOME": "/nonexistent", "LANG": "C.UTF-8"},
        user=UNPRIVILEGED,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@root_only
def test_a_limited_user_imports_the_third_party_requirement(
    greeting_env: roleenv.Environment,
) -> None:
    # `python` resolves through PATH to the venv, as `python app.py` in an entry point would.
    done = run_as_unprivileged(
        ["python", "-c", "import greeting, sys; print(greeting.VERSION, sys.prefix)"],
        greeting_env,
    )
    assert done.returncode == 0, done.stderr
    version, prefix = done.stdout.split()
    assert version == "1.0"
    assert Path(prefix).resolve() == greeting_env.path
    # Console scripts of requirements are on PATH too.
    greet = run_as_unprivileged(["greet"], greeting_env)
    assert (greet.returncode, greet.stdout.strip()) == (0, "hello 1.0"), greet.stderr


@root_only
def test_the_environment_is_read_only_to_instances(greeting_env: roleenv.Environment) -> None:
    for dirpath, dirnames, filenames in os.walk(greeting_env.path):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_uid == 0
                assert st.st_mode & 0o022 == 0, (name, oct(st.st_mode))
                assert st.st_mode & 0o004, (name, oct(st.st_mode))
    site = next(greeting_env.path.glob("lib/python*/site-packages"))
    done = run_as_unprivileged(
        ["python", "-c", f"open({str(site / 'evil.py')!r}, 'w')"], greeting_env
    )
    assert done.returncode != 0
    assert "PermissionError" in done.stderr
    assert not (site / "evil.py").exists()


def test_the_shared_cache_is_reachable_and_pytest_tmp_is_not(
    shared_cache: Path, greeting_env: roleenv.Environment, tmp_path: Path
) -> None:
    roleenv.check_shared_access(shared_cache)
    private = tmp_path / "cache"
    private.mkdir()
    with pytest.raises(roleenv.RoleDependenciesError, match="not reachable by unprivileged"):
        roleenv.check_shared_access(private)
    # An interpreter under a directory only root may enter (like a pyenv under /root) is refused.
    hidden = tmp_path / "python3"
    hidden.symlink_to("/usr/bin/python3")
    with pytest.raises(roleenv.RoleDependenciesError) as caught:
        roleenv.check_shared_access(shared_cache, roleenv.BuildOptions(python=str(hidden)))
    assert "The role interpreter" in caught.value.message
    assert "CUMULO_ROLE_PYTHON" in caught.value.message


_ENSURE_IN_A_PROCESS = textwrap.dedent(
    """
    import json, sys
    from cumulo.host import roleenv
    role, cache, wheelhouse = sys.argv[1:4]
    options = roleenv.BuildOptions(pip=roleenv.PipOptions(no_index=True, find_links=(wheelhouse,)))
    (env,) = roleenv.ensure(role, cache, options)
    print(json.dumps({"path": str(env.path), "built_now": env.built_now, "digest": env.digest}))
    """
)


def test_two_roles_with_the_same_requirements_share_one_environment_built_once(
    tmp_path: Path, fresh_cache: Path, wheelhouse: Path, make_role: MakeRole
) -> None:
    # Two roles (and two instances each) with the same requirements, written differently,
    # all asking at once from separate processes: one build, everyone gets the same venv.
    web = make_role(tmp_path, "WebRole", {"requirements.txt": "cumulo-greeting==1.0\n"})
    worker = make_role(
        tmp_path,
        "WorkerRole",
        {"requirements.txt": "# the worker's needs\n\n  cumulo-greeting==1.0   # pinned\n"},
    )
    env = {**os.environ, "CUMULO_LOG_LEVEL": "warning"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ENSURE_IN_A_PROCESS,
                str(role),
                str(fresh_cache),
                str(wheelhouse),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for role in (web, worker, web, worker)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["path"] for r in results}) == 1
    assert len({r["digest"] for r in results}) == 1
    assert sum(r["built_now"] for r in results) == 1
    assert roleenv.build_count(fresh_cache) == 1
    # A later instance (or an upgrade with unchanged requirements) reuses it without a lock.
    options = roleenv.BuildOptions(
        pip=roleenv.PipOptions(no_index=True, find_links=(str(wheelhouse),))
    )
    (again,) = roleenv.ensure(web, fresh_cache, options)
    assert (str(again.path), again.built_now) == (results[0]["path"], False)
    assert roleenv.build_count(fresh_cache) == 1


def test_threads_in_one_process_also_build_once(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    role = make_role(tmp_path, "Role", {"requirements.txt": "cumulo-greeting==2.0\n"})

    async def many() -> list[tuple[roleenv.Environment, ...]]:
        return await asyncio.gather(
            *(asyncio.to_thread(roleenv.ensure, role, fresh_cache, offline) for _ in range(4))
        )

    results = asyncio.run(many())
    assert len({envs[0].path for envs in results}) == 1
    assert sum(envs[0].built_now for envs in results) == 1
    assert roleenv.build_count(fresh_cache) == 1


def test_a_changed_requirement_builds_a_new_environment_and_the_old_one_stays(
    shared_root: Path,
    shared_cache: Path,
    greeting_env: roleenv.Environment,
    offline: roleenv.BuildOptions,
    make_role: MakeRole,
) -> None:
    upgraded = make_role(
        shared_root / "roles-v2",
        "GreetingWorker",
        {"requirements.txt": "cumulo-greeting==2.0\n"},
    )
    # Before the upgrade walk: the new package's digest differs and it is not built yet ...
    (planned,) = roleenv.plan(upgraded, offline)
    assert planned.digest != greeting_env.digest
    assert roleenv.lookup(upgraded, shared_cache, offline) is None
    # ... so it is built ahead, while the old environment keeps serving.
    (new,) = roleenv.ensure(upgraded, shared_cache, offline)
    assert new.built_now and new.digest == planned.digest and new.path != greeting_env.path
    assert roleenv.lookup(upgraded, shared_cache, offline) == (
        roleenv.Environment("python", new.path, new.bin_dir, new.digest, False),
    )
    for env, version in ((greeting_env, "1.0"), (new, "2.0")):
        done = subprocess.run(
            [str(env.bin_dir / "python"), "-c", "import greeting; print(greeting.VERSION)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == version
    assert roleenv.build_count(shared_cache, digest=greeting_env.digest) == 1
    assert roleenv.build_count(shared_cache, digest=new.digest) == 1


def test_a_broken_requirement_gives_a_clear_error_and_leaves_nothing_behind(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    role = make_role(
        tmp_path, "Broken", {"requirements.txt": "cumulo-greeting==1.0\ncumulo-no-such-thing==9\n"}
    )
    for _attempt in range(2):  # a retry finds no leftovers in its way and fails the same way
        with pytest.raises(roleenv.EnvironmentBuildError) as caught:
            roleenv.ensure(role, fresh_cache, offline)
        err = caught.value
        assert err.role == "Broken" and err.kind == "python"
        assert "role 'Broken'" in err.message
        assert "cumulo-no-such-thing==9" in err.output_tail
        assert "No matching distribution" in err.message
        assert err.log_path is not None and Path(err.log_path).is_file()
        assert err.code == "RoleEnvironmentBuildFailed"
        assert roleenv.lookup(role, fresh_cache, offline) is None
        leftovers = [p.name for p in (fresh_cache / "python").iterdir()]
        assert leftovers == [], leftovers
    records = roleenv.read_build_log(fresh_cache)
    assert [r.outcome for r in records] == ["failed", "failed"]
    assert roleenv.build_count(fresh_cache) == 0


def test_leftovers_of_an_interrupted_build_are_swept_before_building(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    role = make_role(tmp_path, "Role", {"requirements.txt": "cumulo-greeting==1.0\n"})
    (planned,) = roleenv.plan(role, offline)
    kind_dir = fresh_cache / "python"
    kind_dir.mkdir(parents=True)
    half = kind_dir / f"{planned.digest}-deadbeef"
    (half / "bin").mkdir(parents=True)  # as a kill -9 in the middle of pip would leave it
    os.symlink(half.name, kind_dir / f".{planned.digest}-deadbeef.link")
    assert roleenv.lookup(role, fresh_cache, offline) is None  # never used half-built
    (env,) = roleenv.ensure(role, fresh_cache, offline)
    assert env.built_now
    names = sorted(p.name for p in kind_dir.iterdir())
    assert names == sorted([planned.digest, env.path.name])
    assert all(is_attempt_of(n, planned.digest) or n == planned.digest for n in names)


def test_pyproject_dependencies_are_installed(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    role = make_role(
        tmp_path,
        "Role",
        {
            "pyproject.toml": '[project]\nname = "role"\nversion = "0"\n'
            'dependencies = ["cumulo-greeting==2.0"]\n\n[tool.ruff]\nline-length = 99\n'
        },
    )
    (env,) = roleenv.ensure(role, fresh_cache, offline)
    done = subprocess.run(
        [str(env.bin_dir / "python"), "-c", "import greeting; print(greeting.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "2.0"
    assert (env.path / "cumulo-env.json").is_file()
    marker = json.loads((env.path / "cumulo-env.json").read_text())
    assert marker["declaration"] == ["pyproject.toml"] and marker["digest"] == env.digest


def test_a_whole_package_is_prepared_ahead_and_failures_are_per_role(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    roles = {
        "Web": make_role(tmp_path, "Web", {"requirements.txt": "cumulo-greeting==1.0\n"}),
        "Worker": make_role(tmp_path, "Worker", {"requirements.txt": "cumulo-greeting==1.0\n"}),
        "Static": make_role(tmp_path, "Static", {"index.html": "<p>hi</p>\n"}),
        "Bad": make_role(tmp_path, "Bad", {"requirements.txt": "-r missing.txt\n"}),
    }
    result = roleenv.ensure_package(roles, fresh_cache, offline)
    assert not result.ok
    assert set(result.failures) == {"Bad"}
    assert isinstance(result.failures["Bad"], roleenv.RoleDependenciesError)
    assert "includes 'missing.txt', which does not exist" in result.failures["Bad"].message
    assert result.environments["Static"] == ()
    assert result.environments["Web"][0].path == result.environments["Worker"][0].path
    assert roleenv.build_count(fresh_cache) == 1
    with pytest.raises(roleenv.RoleDependenciesError):
        result.raise_for_failures()


def test_retries_back_off_then_give_up_with_the_real_error(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    role = make_role(tmp_path, "Broken", {"requirements.txt": "cumulo-no-such-thing==9\n"})
    clock = FakeClock()
    seen: list[roleenv.RetryState] = []
    policy = roleenv.RetryPolicy(initial_delay=2.0, multiplier=3.0, max_attempts=3)
    with pytest.raises(roleenv.EnvironmentBuildError, match="No matching distribution"):
        asyncio.run(
            roleenv.ensure_retrying(
                role,
                fresh_cache,
                offline,
                policy=policy,
                clock=clock,
                on_failure=lambda _err, state: seen.append(state),
            )
        )
    assert clock.slept == [2.0, 6.0]
    assert [s.failures for s in seen] == [1, 2, 3] and seen[-1].gave_up
    assert [r.outcome for r in roleenv.read_build_log(fresh_cache)] == ["failed"] * 3


def test_prune_removes_environments_no_deployment_uses(
    tmp_path: Path, fresh_cache: Path, offline: roleenv.BuildOptions, make_role: MakeRole
) -> None:
    old = make_role(tmp_path / "v1", "Role", {"requirements.txt": "cumulo-greeting==1.0\n"})
    new = make_role(tmp_path / "v2", "Role", {"requirements.txt": "cumulo-greeting==2.0\n"})
    (env_old,) = roleenv.ensure(old, fresh_cache, offline)
    (env_new,) = roleenv.ensure(new, fresh_cache, offline)
    assert roleenv.prune(fresh_cache, keep={env_new.digest}) == [env_old.digest]
    assert not env_old.path.exists()
    assert roleenv.lookup(old, fresh_cache, offline) is None
    assert roleenv.lookup(new, fresh_cache, offline) is not None
    assert roleenv.prune(fresh_cache, keep={env_new.digest}) == []
