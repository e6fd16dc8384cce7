"""Node.js role environments with real npm: `npm ci` once into a cached node_modules, linked
into the approot; offline installs from npm's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cumulo.host import roleenv

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "roleenv"
MakeRole = Callable[[Path, str, dict[str, str]], Path]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")


def approot_for(shared_root: Path, name: str) -> Path:
    approot = shared_root / "approots" / name
    shutil.copytree(FIXTURES / "node-worker", approot)
    return approot


@root_only
def test_a_node_worker_role_with_a_dependency_runs(
    shared_root: Path, node_env: roleenv.Environment
) -> None:
    assert node_env.kind == "node" and node_env.node_modules is not None
    assert (node_env.node_modules / "is-number" / "package.json").is_file()
    approot = approot_for(shared_root, "NodeWorker_IN_0")
    roleenv.link_into_approot([node_env], approot)
    variables = roleenv.instance_variables([node_env], "/usr/bin:/bin")
    done = subprocess.run(
        ["node", "worker.js"],
        cwd=approot,
        env={**variables, "HOME": "/nonexistent"},
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert Path(report["resolved"]).is_relative_to(node_env.path)


def test_a_second_instance_reuses_node_modules_and_relinks(
    shared_root: Path, shared_cache: Path, node_env: roleenv.Environment, npm_cache: Path
) -> None:
    approot = approot_for(shared_root, "NodeWorker_IN_1")
    options = roleenv.BuildOptions(npm=roleenv.NpmOptions(cache_dir=str(npm_cache)))
    (again,) = roleenv.ensure(approot, shared_cache, options)
    assert (again.path, again.built_now) == (node_env.path, False)
    roleenv.link_into_approot([again], approot)
    roleenv.link_into_approot([again], approot)  # idempotent: the link is replaced atomically
    assert (approot / "node_modules").resolve() == node_env.node_modules
    assert roleenv.build_count(shared_cache, kind="node") == 1


def test_a_shipped_node_modules_is_refused_not_deleted(tmp_path: Path) -> None:
    role = tmp_path / "Role"
    shutil.copytree(FIXTURES / "node-worker", role)
    (role / "node_modules").mkdir()
    with pytest.raises(roleenv.RoleDependenciesError, match="ships node_modules"):
        roleenv.detect(role)
    assert (role / "node_modules").is_dir()


def test_offline_builds_come_from_the_npm_cache_with_and_without_a_lock(
    tmp_path: Path, fresh_cache: Path, node_env: roleenv.Environment, npm_cache: Path
) -> None:
    # node_env filled npm_cache; a machine without a registry builds from it (--offline).
    options = roleenv.BuildOptions(npm=roleenv.NpmOptions(offline=True, cache_dir=str(npm_cache)))
    locked = tmp_path / "Locked"
    shutil.copytree(FIXTURES / "node-worker", locked)
    unlocked = tmp_path / "Unlocked"
    shutil.copytree(FIXTURES / "node-worker", unlocked)
    (unlocked / "package-lock.json").unlink()
    (env_locked,) = roleenv.ensure(locked, fresh_cache, options)
    (env_unlocked,) = roleenv.ensure(unlocked, fresh_cache, options)
    assert env_locked.digest == node_env.digest  # offline mode does not change a locked digest
    assert env_unlocked.digest != env_locked.digest
    for env in (env_locked, env_unlocked):
        assert env.node_modules is not None
        assert (env.node_modules / "is-number" / "index.js").is_file()
    assert roleenv.build_count(fresh_cache, kind="node") == 2


def test_a_broken_node_dependency_gives_npms_output_and_nothing_published(
    tmp_path: Path, fresh_cache: Path, npm_cache: Path, make_role: MakeRole
) -> None:
    role = make_role(
        tmp_path,
        "BrokenNode",
        {"package.json": json.dumps({"name": "x", "dependencies": {"is-number": "99.99.99"}})},
    )
    options = roleenv.BuildOptions(npm=roleenv.NpmOptions(offline=True, cache_dir=str(npm_cache)))
    with pytest.raises(roleenv.EnvironmentBuildError) as caught:
        roleenv.ensure(role, fresh_cache, options)
    err = caught.value
    assert err.kind == "node" and err.role == "BrokenNode"
    assert "npm exited with status" in err.message
    assert "npm error" in err.output_tail
    assert roleenv.lookup(role, fresh_cache, options) is None
    assert list((fresh_cache / "node").iterdir()) == []


def test_the_roles_own_scripts_and_npmrc_stay_out_of_the_shared_environment(
    tmp_path: Path, fresh_cache: Path, npm_cache: Path, make_role: MakeRole
) -> None:
    package = {
        "name": "scripted",
        "scripts": {"postinstall": "node setup.js", "start": "node worker.js"},
        "dependencies": {"is-number": "7.0.0"},
    }
    role = make_role(
        tmp_path,
        "Scripted",
        {"package.json": json.dumps(package), ".npmrc": "//npm.corp.test/:_authToken=SECRET\n"},
    )
    options = roleenv.BuildOptions(npm=roleenv.NpmOptions(offline=True, cache_dir=str(npm_cache)))
    (env,) = roleenv.ensure(role, fresh_cache, options)
    assert env.node_modules is not None and (env.node_modules / "is-number").is_dir()
    assert "scripts" not in json.loads((env.path / "package.json").read_text())
    # The role's .npmrc (it may hold a token) served the build and is not left readable.
    assert not (env.path / ".npmrc").exists()
