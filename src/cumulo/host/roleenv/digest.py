"""The environment digest: a pure function of what decides an environment's contents.

Two roles, instances or deployments whose digests are equal share one environment. The digest
covers:

- the declaration, normalised (``detect.normalize_requirements``: comments, blank lines and
  indentation do not count; for pyproject.toml only ``[project] dependencies`` count), or the
  exact bytes of package.json, the lock file and .npmrc;
- the toolchain: the role interpreter's path, version, implementation, platform and ABI, and the
  pip that installs (for Python); node's version, platform, architecture and module ABI and npm's
  version (for Node.js);
- the install options that can change what gets installed (``PipOptions.digest_fields``,
  ``NpmOptions.digest_fields``);
- ``FORMAT``, bumped when the builder starts laying environments out differently.

It does not cover timeouts, npm's cache location or offline mode with a lock file (the lock's
integrity hashes pin the tarballs whatever their source).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from cumulo.host.roleenv.detect import NodeRequirements, PythonRequirements
from cumulo.host.roleenv.options import NpmOptions, PipOptions

FORMAT = 1
DIGEST_LENGTH = 20  # hex characters (80 bits): short enough to keep shebang lines short


@dataclass(frozen=True)
class PythonToolchain:
    """The role interpreter and the pip that installs into its environments."""

    executable: str
    """The interpreter as given (venvs link to this path)."""
    realpath: str
    version: str
    """``platform.python_version()``, e.g. ``3.11.2``."""
    implementation: str
    platform: str
    """``sysconfig.get_platform()``, e.g. ``linux-x86_64``."""
    soabi: str
    installer: str
    """Which pip installs, e.g. ``pip 26.3 (platform, --python)`` or ``pip (bundled)``."""


@dataclass(frozen=True)
class NodeToolchain:
    """node and npm as found on this host."""

    node: str
    node_version: str
    npm: str
    npm_version: str
    platform: str
    arch: str
    modules_abi: str


def _hash(document: dict[str, Any]) -> str:
    blob = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:DIGEST_LENGTH]


def python_digest(req: PythonRequirements, toolchain: PythonToolchain, pip: PipOptions) -> str:
    """The digest of the Python environment ``req`` needs with this toolchain and options."""
    return _hash(
        {
            "format": FORMAT,
            "kind": "python",
            "declaration": [[path, list(lines)] for path, lines in req.normalized],
            "toolchain": asdict(toolchain),
            "options": pip.digest_fields(),
        }
    )


def node_digest(req: NodeRequirements, toolchain: NodeToolchain, npm: NpmOptions) -> str:
    """The digest of the Node.js environment ``req`` needs with this toolchain and options."""
    return _hash(
        {
            "format": FORMAT,
            "kind": "node",
            "files": {f.path: hashlib.sha256(f.content).hexdigest() for f in req.files},
            "toolchain": asdict(toolchain),
            "options": npm.digest_fields(locked=req.lock is not None),
        }
    )
