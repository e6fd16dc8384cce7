"""cumulo.host.roleenv — role dependencies: build a role's venv / node_modules once, cached.

A role folder that holds ``requirements.txt`` (or ``pyproject.toml`` with ``[project]``) gets a
Python virtual environment; one with ``package.json`` (+ lock file) gets ``node_modules`` from
``npm ci``. Environments live in a cache keyed by a digest of the declaration, the toolchain and
the install options, so instances and deployments with the same requirements share one
environment, built once, read-only to instances and readable by ``limited`` roles' users.
User guide: docs/role-dependencies.md.

The API the host agent calls (all blocking; use ``asyncio.to_thread`` or ``ensure_retrying``)::

    from cumulo.host import roleenv

    envs = roleenv.ensure(role_dir, cache_root, roleenv.BuildOptions())
    #   -> tuple[Environment(kind, path, bin_dir, digest, built_now), ...]  (python, then node)
    roleenv.link_into_approot(envs, approot)          # APPROOT/node_modules -> cached one
    env.update(roleenv.instance_variables(envs, env.get("PATH")))   # bin first on PATH, ...

    # before an upgrade walk stops any instance (at spec receipt): every role of the package
    result = roleenv.ensure_package({"WebRole": dir1, "Worker": dir2}, cache_root, options)
    result.failures    # role -> error; result.environments  # role -> environments

    # with retries and backoff (an asyncio task of the host agent)
    envs = await roleenv.ensure_retrying(role_dir, cache_root, options,
                                         policy=roleenv.RetryPolicy(), clock=clock,
                                         on_failure=lambda err, state: ...)

    roleenv.options_from_settings({"pip.find_links": "/srv/wheels", "pip.no_index": "true"})
    roleenv.options_from_environ()     # CUMULO_PIP_INDEX_URL, CUMULO_NPM_REGISTRY, ...
    roleenv.plan(role_dir, options)    # digests only (compare old and new deployment)
    roleenv.lookup(role_dir, cache_root, options)   # built environments, or None
    roleenv.check_shared_access(cache_root, options)  # raise unless limited roles can use it
    roleenv.prune(cache_root, keep=digests_in_use)    # remove environments nobody uses
    roleenv.build_count(cache_root) / roleenv.read_build_log(cache_root)

Errors: ``RoleDependenciesError`` (InputError: the role's files; not retried),
``EnvironmentBuildError`` (TemporaryError: pip/npm failed; carries ``output_tail`` and
``log_path``; retry with backoff), ``RoleInterpreterError`` (InternalError: toolchain missing).

Modules: ``detect`` (what a folder declares), ``digest`` (the cache key), ``layout`` (cache
paths), ``retry`` (backoff) are the pure core; ``toolchain`` (role interpreter, node/npm),
``builder`` (locking, building, publishing), ``instance`` (approot link, variables) and
``_tools`` (the only module here that starts processes: pip, npm, venv and probes) are the edges.
"""

from __future__ import annotations

from cumulo.host.roleenv.builder import (
    BuildRecord,
    Environment,
    PackageEnvironments,
    PlannedEnvironment,
    build_count,
    check_shared_access,
    ensure,
    ensure_package,
    ensure_retrying,
    lookup,
    plan,
    prune,
    read_build_log,
)
from cumulo.host.roleenv.detect import RoleRequirements, detect
from cumulo.host.roleenv.errors import (
    EnvironmentBuildError,
    RoleDependenciesError,
    RoleInterpreterError,
)
from cumulo.host.roleenv.instance import instance_variables, link_into_approot
from cumulo.host.roleenv.options import (
    BuildOptions,
    NpmOptions,
    PipOptions,
    options_from_environ,
    options_from_settings,
)
from cumulo.host.roleenv.retry import RetryPolicy, RetryState
from cumulo.host.roleenv.toolchain import resolve_role_python

__all__ = [
    "BuildOptions",
    "BuildRecord",
    "Environment",
    "EnvironmentBuildError",
    "NpmOptions",
    "PackageEnvironments",
    "PipOptions",
    "PlannedEnvironment",
    "RetryPolicy",
    "RetryState",
    "RoleDependenciesError",
    "RoleInterpreterError",
    "RoleRequirements",
    "build_count",
    "check_shared_access",
    "detect",
    "ensure",
    "ensure_package",
    "ensure_retrying",
    "instance_variables",
    "link_into_approot",
    "lookup",
    "options_from_environ",
    "options_from_settings",
    "plan",
    "prune",
    "read_build_log",
    "resolve_role_python",
]
