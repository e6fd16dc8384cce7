"""The cache layout (pure: paths only, nothing touches the disk).

::

    CACHE_ROOT/                          0755, owned by the builder (root)
      python/<digest>                    symlink -> <digest>-<nonce>  (the published entry)
      python/<digest>-<nonce>/           the venv itself: bin/ lib/ pyvenv.cfg cumulo-env.json
      node/<digest>                      symlink -> <digest>-<nonce>
      node/<digest>-<nonce>/             package.json, lock, node_modules/, cumulo-env.json
      locks/<kind>-<digest>.lock         fcntl lock files (one per environment)
      logs/<kind>-<digest>-<nonce>.log   full pip/npm output of recent attempts (0700)
      builds.jsonl                       one JSON line per build attempt (the build log)

Why a symlink and not a renamed directory: a virtual environment cannot be moved once pip has
run (console scripts and ``activate`` hold its absolute path), so an environment is built in its
final, never-moving directory ``<digest>-<nonce>`` and *published* by atomically renaming a
symlink ``<digest>`` onto it. The name ``<digest>`` either does not exist or names a complete
environment; a failed or interrupted build leaves only an unpublished ``<digest>-<nonce>``,
which the next build of that digest removes under the lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KINDS = ("python", "node")
MARKER = "cumulo-env.json"
BUILD_LOG = "builds.jsonl"
_NONCE = re.compile(r"^[0-9a-f]{6,32}$")


@dataclass(frozen=True)
class CacheLayout:
    """Where everything lives under one cache root."""

    root: Path

    def kind_dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown environment kind {kind!r}")
        return self.root / kind

    def entry(self, kind: str, digest: str) -> Path:
        """The published name (a symlink) of an environment."""
        return self.kind_dir(kind) / digest

    def build_dir(self, kind: str, digest: str, nonce: str) -> Path:
        """Where one build of an environment happens (and stays, once published)."""
        return self.kind_dir(kind) / f"{digest}-{nonce}"

    def staging_link(self, kind: str, digest: str, nonce: str) -> Path:
        """The temporary symlink renamed onto ``entry`` to publish a build."""
        return self.kind_dir(kind) / f".{digest}-{nonce}.link"

    def lock(self, kind: str, digest: str) -> Path:
        return self.root / "locks" / f"{kind}-{digest}.lock"

    def log(self, kind: str, digest: str, nonce: str) -> Path:
        return self.root / "logs" / f"{kind}-{digest}-{nonce}.log"

    @property
    def build_log(self) -> Path:
        return self.root / BUILD_LOG

    @property
    def directories(self) -> tuple[Path, ...]:
        """Every directory the builder creates (mode 0755)."""
        return (
            self.root,
            *(self.kind_dir(k) for k in KINDS),
            self.root / "locks",
            self.root / "logs",
        )


def is_attempt_of(name: str, digest: str) -> bool:
    """True when ``name`` is a build directory or staging link of ``digest``."""
    if name.startswith("."):
        name = name[1:]
        if not name.endswith(".link"):
            return False
        name = name[: -len(".link")]
    prefix = digest + "-"
    return name.startswith(prefix) and bool(_NONCE.match(name[len(prefix) :]))
