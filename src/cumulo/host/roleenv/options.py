"""Settings of the role-environment builder (grouped dataclasses, one docstring per field).

A deployment (or the host) chooses where pip and npm get packages from — the public indexes, a
private mirror, or a local wheelhouse / npm cache on a machine without internet. The options that
can change *what* gets installed are part of the environment digest (see ``digest.py``); the
ones that only change *how* (timeouts, the npm cache location, offline mode with a locked
package) are not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


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


def default_role_python() -> str | None:
    """``$CUMULO_ROLE_PYTHON`` if set, else None (the resolver then tries the system python)."""
    return os.environ.get("CUMULO_ROLE_PYTHON") or None


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
