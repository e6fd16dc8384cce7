"""Detection: what a role folder declares it needs (no processes, no writes; reads files only).

A role folder declares its dependencies with, in this order of precedence:

- ``requirements.txt`` — a Python environment; pip's format. ``-r``/``-c`` includes are followed
  (they must stay inside the role folder) and are covered by the digest. Local-path and
  editable requirements are refused: an environment is shared between roles and deployments and
  keyed by the requirement *text*, so a path's contents would not be part of the key.
- ``pyproject.toml`` with a ``[project]`` table (only when there is no requirements.txt) — a
  Python environment with ``[project] dependencies`` installed. The role's own code is not
  installed: it runs from the approot. A pyproject.toml without ``[project]`` (tool settings
  only) declares nothing.
- ``package.json`` — a Node.js environment: ``npm ci`` with ``npm-shrinkwrap.json`` or
  ``package-lock.json``; ``npm install`` when there is no lock file (not reproducible; a warning
  is logged and docs/role-dependencies.md recommends committing the lock). A ``.npmrc`` beside it
  is used and covered by the digest. A role that ships ``node_modules/`` is refused.

A role may declare both a Python and a Node.js environment. ``normalize_requirements`` is the pure
core the digest uses: comments, blank lines, indentation and line continuations do not change it.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cumulo.host.roleenv.errors import RoleDependenciesError

REQUIREMENTS_TXT = "requirements.txt"
PYPROJECT_TOML = "pyproject.toml"
PACKAGE_JSON = "package.json"
NODE_LOCKS = ("npm-shrinkwrap.json", "package-lock.json")  # npm's own precedence
NPMRC = ".npmrc"

_COMMENT = re.compile(r"(^|\s+)#.*$")
_EDITABLE = re.compile(r"^(-e|--editable)(\s|=|$)")
_MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class SourceFile:
    """A file of the role's declaration: its path relative to the role folder and its bytes."""

    path: str
    content: bytes


@dataclass(frozen=True)
class PythonRequirements:
    """A Python environment to build."""

    source: str
    """``requirements.txt`` or ``pyproject.toml``: which declaration was used."""

    files: tuple[SourceFile, ...]
    """Every file read (the requirements file and its includes, or pyproject.toml)."""

    normalized: tuple[tuple[str, tuple[str, ...]], ...]
    """What the digest covers: per file, its requirement lines without comments and blanks."""

    dependencies: tuple[str, ...] = ()
    """For pyproject.toml: ``[project] dependencies``, written to a file for pip."""

    kind: str = "python"


@dataclass(frozen=True)
class NodeRequirements:
    """A Node.js environment to build."""

    package_json: SourceFile
    lock: SourceFile | None
    npmrc: SourceFile | None
    kind: str = "node"

    @property
    def files(self) -> tuple[SourceFile, ...]:
        return tuple(f for f in (self.package_json, self.lock, self.npmrc) if f is not None)


@dataclass(frozen=True)
class RoleRequirements:
    """Everything one role folder declares; ``python``/``node`` are None when not declared."""

    role_dir: str
    python: PythonRequirements | None
    node: NodeRequirements | None
    notes: tuple[str, ...] = ()
    """Sentences worth logging (e.g. a pyproject.toml that was ignored)."""

    @property
    def declared(self) -> tuple[PythonRequirements | NodeRequirements, ...]:
        return tuple(r for r in (self.python, self.node) if r is not None)


# ------------------------------------------------------------------------------------------
# requirements.txt


@dataclass(frozen=True)
class RequirementLine:
    """One logical line of a requirements file (continuations joined, comment removed)."""

    line: int
    text: str


def logical_lines(text: str) -> list[RequirementLine]:
    """Split a requirements file as pip does: join ``\\`` continuations, drop comments/blanks."""
    out: list[RequirementLine] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        joined = "".join(pending)
        pending = []
        cleaned = _COMMENT.sub("", joined).strip()
        cleaned = " ".join(cleaned.split())
        if cleaned:
            out.append(RequirementLine(start, cleaned))
    if pending:
        cleaned = " ".join(_COMMENT.sub("", "".join(pending)).split())
        if cleaned:
            out.append(RequirementLine(start, cleaned))
    return out


def normalize_requirements(text: str) -> tuple[str, ...]:
    """The digest's view of a requirements file: its logical lines, in order."""
    return tuple(line.text for line in logical_lines(text))


def _include_target(text: str) -> str | None:
    """The file named by ``-r``/``--requirement``/``-c``/``--constraint``, else None."""
    for option in ("--requirement", "--constraint"):
        if text.startswith(option):
            rest = text[len(option) :]
            if rest[:1] in ("=", " "):
                return rest.lstrip("= ").strip() or None
            return None
    if text.startswith(("-r", "-c")):
        return text[2:].lstrip("= ").strip() or None
    return None


def _local_path_problem(text: str) -> str | None:
    if _EDITABLE.match(text):
        return "is an editable requirement"
    first = text.split()[0] if text.split() else text
    if first.startswith((".", "/", "~")) or first.startswith("file:"):
        return "is a local path"
    if re.search(r"@\s*file:", text):
        return "points at a local file"
    return None


def _read_requirements(
    role_dir: Path,
    rel: PurePosixPath,
    seen: dict[str, tuple[str, ...]],
    files: list[SourceFile],
    depth: int,
    origin: str,
) -> None:
    key = rel.as_posix()
    if key in seen:
        return
    if depth > _MAX_INCLUDE_DEPTH:
        raise RoleDependenciesError(
            f"{origin}: requirement includes nest deeper than {_MAX_INCLUDE_DEPTH} files."
        )
    path = role_dir / rel
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RoleDependenciesError(f"{origin} includes '{key}', which does not exist.") from None
    except OSError as exc:
        raise RoleDependenciesError(f"{role_dir / key} cannot be read: {exc.strerror}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RoleDependenciesError(
            f"{role_dir / key}: not UTF-8 text (byte {exc.start}); a requirements file is text."
        ) from None
    lines = logical_lines(text)
    seen[key] = tuple(line.text for line in lines)
    files.append(SourceFile(key, raw))
    for line in lines:
        where = f"{role_dir / key}:{line.line}"
        target = _include_target(line.text)
        if target is not None:
            if "://" in target:
                raise RoleDependenciesError(
                    f"{where}: include '{target}' is a URL; includes must be files inside the "
                    "role folder so that the environment's digest covers them."
                )
            included = PurePosixPath(rel.parent, target)
            resolved = _inside(role_dir, included)
            if resolved is None:
                raise RoleDependenciesError(
                    f"{where}: include '{target}' is outside the role folder; includes must "
                    "be files inside it."
                )
            _read_requirements(role_dir, resolved, seen, files, depth + 1, where)
            continue
        problem = _local_path_problem(line.text)
        if problem is not None:
            raise RoleDependenciesError(
                f"{where}: requirement '{line.text}' {problem}; role environments are shared "
                "and keyed by the requirement text, so local paths are not supported. Build a "
                "wheel into a wheelhouse and install it by name (docs/role-dependencies.md)."
            )


def _inside(role_dir: Path, rel: PurePosixPath) -> PurePosixPath | None:
    """``rel`` normalised, or None when it leaves the role folder (or is absolute)."""
    if rel.is_absolute():
        return None
    parts: list[str] = []
    for part in rel.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        return None
    resolved = PurePosixPath(*parts)
    real_root = role_dir.resolve()
    real = (role_dir / resolved).resolve()
    if real != real_root and real_root not in real.parents:
        return None
    return resolved


def _python_from_requirements(role_dir: Path) -> PythonRequirements:
    seen: dict[str, tuple[str, ...]] = {}
    files: list[SourceFile] = []
    _read_requirements(role_dir, PurePosixPath(REQUIREMENTS_TXT), seen, files, 0, str(role_dir))
    return PythonRequirements(
        source=REQUIREMENTS_TXT,
        files=tuple(files),
        normalized=tuple(sorted(seen.items())),
    )


# ------------------------------------------------------------------------------------------
# pyproject.toml


def _line_of(text: str, pattern: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(pattern, line):
            return number
    return None


def _python_from_pyproject(role_dir: Path, raw: bytes) -> PythonRequirements | None:
    path = role_dir / PYPROJECT_TOML
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise RoleDependenciesError(f"{path}: not UTF-8 text (byte {exc.start}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise RoleDependenciesError(f"{path}: not valid TOML: {exc}.") from None
    project = data.get("project")
    if project is None:
        return None
    if not isinstance(project, dict):
        raise RoleDependenciesError(f"{path}: [project] must be a table.")
    line = _line_of(text, r"\s*dependencies\s*=")
    where = f"{path}:{line}" if line else str(path)
    dynamic = project.get("dynamic", [])
    if isinstance(dynamic, list) and "dependencies" in dynamic:
        raise RoleDependenciesError(
            f"{path}: [project] lists 'dependencies' as dynamic; cumulo installs a role's "
            "declared dependencies without building the role, so list them in [project] "
            "dependencies (or use requirements.txt)."
        )
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise RoleDependenciesError(
            f"{where}: [project] dependencies must be a list of strings, not {deps!r}."
        )
    normalized = tuple(" ".join(d.split()) for d in deps if d.strip())
    for dep in normalized:
        problem = _local_path_problem(dep)
        if problem is not None:
            raise RoleDependenciesError(
                f"{where}: dependency '{dep}' {problem}; role environments are shared and "
                "keyed by the requirement text, so local paths are not supported."
            )
    return PythonRequirements(
        source=PYPROJECT_TOML,
        files=(SourceFile(PYPROJECT_TOML, raw),),
        normalized=((PYPROJECT_TOML, normalized),),
        dependencies=normalized,
    )


# ------------------------------------------------------------------------------------------
# package.json


def _read_json_file(path: Path, *, must_be_object: bool) -> bytes:
    raw = path.read_bytes()
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RoleDependenciesError(f"{path}: not UTF-8 text (byte {exc.start}).") from None
    except json.JSONDecodeError as exc:
        raise RoleDependenciesError(
            f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})."
        ) from None
    if must_be_object and not isinstance(value, dict):
        raise RoleDependenciesError(f"{path}: must hold a JSON object, not {type(value).__name__}.")
    return raw


def _node(role_dir: Path) -> NodeRequirements:
    if (role_dir / "node_modules").exists():
        raise RoleDependenciesError(
            f"{role_dir / 'node_modules'}: the role ships node_modules beside package.json; "
            "cumulo builds node_modules from package.json and its lock file, so leave it out "
            "of the package."
        )
    package = SourceFile(
        PACKAGE_JSON, _read_json_file(role_dir / PACKAGE_JSON, must_be_object=True)
    )
    lock = None
    for name in NODE_LOCKS:
        if (role_dir / name).is_file():
            lock = SourceFile(name, _read_json_file(role_dir / name, must_be_object=True))
            break
    npmrc = None
    if (role_dir / NPMRC).is_file():
        npmrc = SourceFile(NPMRC, (role_dir / NPMRC).read_bytes())
    return NodeRequirements(package_json=package, lock=lock, npmrc=npmrc)


# ------------------------------------------------------------------------------------------


def detect(role_dir: str | Path) -> RoleRequirements:
    """Read what ``role_dir`` declares; raises ``RoleDependenciesError`` with file and line."""
    root = Path(role_dir)
    if not root.is_dir():
        raise RoleDependenciesError(f"{root}: the role folder does not exist.")
    notes: list[str] = []
    python: PythonRequirements | None = None
    has_pyproject = (root / PYPROJECT_TOML).is_file()
    if (root / REQUIREMENTS_TXT).is_file():
        python = _python_from_requirements(root)
        if has_pyproject:
            notes.append(
                f"{root / PYPROJECT_TOML} is not used for dependencies because "
                f"{REQUIREMENTS_TXT} is present (requirements.txt takes precedence)."
            )
    elif has_pyproject:
        python = _python_from_pyproject(root, (root / PYPROJECT_TOML).read_bytes())
    node: NodeRequirements | None = None
    if (root / PACKAGE_JSON).is_file():
        node = _node(root)
        if node.lock is None:
            notes.append(
                f"{root / PACKAGE_JSON} has no package-lock.json beside it: npm install "
                "resolves versions at build time; commit the lock file for reproducible builds."
            )
    return RoleRequirements(role_dir=str(root), python=python, node=node, notes=tuple(notes))
