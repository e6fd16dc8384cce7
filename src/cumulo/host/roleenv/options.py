"""Settings of the role-environment builder (grouped dataclasses, one docstring per field).

A deployment (or the host) chooses where pip and npm get packages from — the public indexes, a
private mirror, or a local wheelhouse / npm cache on a machine without internet. The options that
can change *what* gets installed are part of the environment digest (see ``digest.py``); the
ones that only change *how* (timeouts, the npm cache location, offline mode with a locked
package) are not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cumulo.host.roleenv.errors import RoleDependenciesError


@dataclass(frozen=True)
class PipOptions:
    """Where pip finds Python packages."""

    index_url: str | None = None
    """``--index-url``: the package index to use instead of PyPI (a mirror, devpi, a
    ``file://`` simple index). None: pip's default (PyPI)."""

    extra_index_urls: tuple[str, ...] = ()
    """``--extra-index-url``, each: further indexes searched as well as the main one."""

    find_links: tuple[str, ...] = ()
    """``--find-links``, each: a local directory of wheels (a *wheelhouse*) or a URL of a page
    of links. With ``no_index`` this is how an offline machine installs."""

    no_index: bool = False
    """``--no-index``: never contact an index; only ``find_links`` are used (offline)."""

    def digest_fields(self) -> dict[str, Any]:
        return {
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "find_links": list(self.find_links),
            "no_index": self.no_index,
        }

    def arguments(self) -> list[str]:
        """The pip ``install`` arguments these options stand for."""
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args


@dataclass(frozen=True)
class NpmOptions:
    """Where npm finds Node.js packages and what it installs."""

    registry: str | None = None
    """``--registry``: the npm registry to use instead of the public one (a mirror, Verdaccio).
    Part of the digest only for roles without a lock file (a lock pins the exact tarballs)."""

    offline: bool = False
    """``--offline``: never contact a registry; every tarball must already be in ``cache_dir``
    (fill it on a connected machine with ``npm cache add`` or one ``npm ci``)."""

    cache_dir: str | None = None
    """``--cache``: npm's cache directory. None: npm's default (``~/.npm`` of the builder)."""

    include_dev: bool = False
    """Install ``devDependencies`` too. False: ``--omit=dev`` (a role runs, it does not build)."""

    ignore_scripts: bool = False
    """``--ignore-scripts``: do not run packages' install scripts (no native builds)."""

    def digest_fields(self, *, locked: bool) -> dict[str, Any]:
        return {
            "registry": None if locked else self.registry,
            "include_dev": self.include_dev,
            "ignore_scripts": self.ignore_scripts,
        }

    def arguments(self) -> list[str]:
        """The npm ``ci``/``install`` arguments these options stand for."""
        args = ["--no-audit", "--no-fund", "--loglevel=warn"]
        if not self.include_dev:
            args.append("--omit=dev")
        if self.ignore_scripts:
            args.append("--ignore-scripts")
        if self.registry:
            args += ["--registry", self.registry]
        if self.offline:
            args.append("--offline")
        if self.cache_dir:
            args += ["--cache", self.cache_dir]
        return args


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``ensure`` needs besides the role folder and the cache root."""

    pip: PipOptions = field(default_factory=PipOptions)
    """Where pip finds packages (index, wheelhouse, offline)."""

    npm: NpmOptions = field(default_factory=NpmOptions)
    """Where npm finds packages (registry, cache, offline) and what it installs."""

    python: str | None = None
    """The role interpreter, a path. None: ``$CUMULO_ROLE_PYTHON``, else ``/usr/bin/python3``,
    else the platform's own ``sys.executable`` (see ``toolchain.resolve_role_python``). It must
    be runnable by the unprivileged users of ``limited`` roles."""

    node: str | None = None
    """The ``node`` executable. None: the one on PATH."""

    npm_command: str | None = None
    """The ``npm`` executable. None: the one on PATH."""

    timeout_seconds: float = 900.0
    """How long one pip or npm run may take before it is killed and the build fails."""

    role: str | None = None
    """The role's name, used in logs and errors. None: the role folder's name."""


# ------------------------------------------------------------------------------------------
# From text settings: a deployment's settings or the host's environment variables.

SETTINGS: dict[str, str] = {
    "pip.index_url": "CUMULO_PIP_INDEX_URL",
    "pip.extra_index_urls": "CUMULO_PIP_EXTRA_INDEX_URLS",
    "pip.find_links": "CUMULO_PIP_FIND_LINKS",
    "pip.no_index": "CUMULO_PIP_NO_INDEX",
    "npm.registry": "CUMULO_NPM_REGISTRY",
    "npm.offline": "CUMULO_NPM_OFFLINE",
    "npm.cache_dir": "CUMULO_NPM_CACHE",
    "npm.include_dev": "CUMULO_NPM_INCLUDE_DEV",
    "npm.ignore_scripts": "CUMULO_NPM_IGNORE_SCRIPTS",
    "python": "CUMULO_ROLE_PYTHON",
    "timeout_seconds": "CUMULO_ROLE_ENV_TIMEOUT",
}
"""Setting name -> the environment variable a host reads it from."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RoleDependenciesError(f"{where}: setting '{name}' is {value!r}; use true or false.")


def _list(value: str) -> tuple[str, ...]:
    return tuple(p for p in (x.strip() for x in value.replace(",", " ").split()) if p)


def options_from_settings(
    values: Mapping[str, str], base: BuildOptions | None = None, *, where: str = "settings"
) -> BuildOptions:
    """``BuildOptions`` from text settings named as in ``SETTINGS`` (lists: comma- or
    space-separated; flags: true/false). Unknown names and bad values raise
    ``RoleDependenciesError`` naming ``where``, the setting and the value."""
    opts = base or BuildOptions()
    pip: dict[str, Any] = {}
    npm: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for name, value in values.items():
        if name not in SETTINGS:
            known = ", ".join(sorted(SETTINGS))
            raise RoleDependenciesError(f"{where}: unknown setting '{name}' (known: {known}).")
        if name in ("pip.no_index",):
            pip["no_index"] = _flag(name, value, where)
        elif name in ("pip.extra_index_urls", "pip.find_links"):
            pip[name.split(".", 1)[1]] = _list(value)
        elif name == "pip.index_url":
            pip["index_url"] = value.strip() or None
        elif name in ("npm.offline", "npm.include_dev", "npm.ignore_scripts"):
            npm[name.split(".", 1)[1]] = _flag(name, value, where)
        elif name in ("npm.registry", "npm.cache_dir"):
            npm[name.split(".", 1)[1]] = value.strip() or None
        elif name == "python":
            top["python"] = value.strip() or None
        else:
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise RoleDependenciesError(
                    f"{where}: setting '{name}' is {value!r}; use a number of seconds above 0."
                )
            top["timeout_seconds"] = seconds
    return replace(
        opts,
        pip=replace(opts.pip, **pip),
        npm=replace(opts.npm, **npm),
        **top,
    )


def options_from_environ(
    environ: Mapping[str, str] | None = None, base: BuildOptions | None = None
) -> BuildOptions:
    """``BuildOptions`` from the host's ``CUMULO_PIP_*``/``CUMULO_NPM_*`` variables."""
    env = os.environ if environ is None else environ
    values = {name: env[var] for name, var in SETTINGS.items() if var in env}
    return options_from_settings(values, base, where="environment")
