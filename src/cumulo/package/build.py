"""Build a ``.cspkg``: a reproducible zip of a service directory with a manifest of digests.

What goes in (paths relative to the service directory DIR):

- ``ServiceDefinition.csdef`` and every top-level ``*.cscfg`` (Azure keeps the configuration
  apart from the package; cumulo carries them along so ``cumulo validate FILE.cspkg`` works,
  and a deployment still takes its configuration separately);
- each role's folder ``DIR/<RoleName>/``;
- the directories named by Site / VirtualApplication / VirtualDirectory ``physicalDirectory``
  and ``Contents/Content/SourceDirectory path``.

Left out anywhere: ``__pycache__``, ``*.pyc``, ``.git``/``.hg``/``.svn``, ``node_modules``
(role environments are built from ``requirements.txt`` / ``package.json`` at deploy time), and
virtual environments (a directory holding ``pyvenv.cfg``, or named ``.venv``). A symbolic link
or special file is an error: a package holds regular files only.

Reproducible: entries are sorted, every timestamp is 1980-01-01 00:00, permissions are 0644 or
0755 (from the executable bit), compression is deflate level 9, and the manifest is canonical
JSON; the same input gives a byte-identical file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cumulo.errors import PackageError
from cumulo.model.definition import ServiceDefinition
from cumulo.model.service import DEFINITION_FILE, Service, load_service
from cumulo.model.validate import AZURE_LIMITS, Limits

MANIFEST_NAME = "cumulo-manifest.json"
"""The manifest's entry name at the package root (never a role folder name: roles are folders)."""

FORMAT = "cumulo-package/1"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
EXCLUDED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", "node_modules", ".venv"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class BuiltPackage:
    """Result of a build: where it went, how many files, its size and sha256."""

    path: Path
    files: int
    size: int
    sha256: str
    service: Service


def _is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def _walk(root: Path, rel_dir: str, out: dict[str, Path]) -> None:
    base = root / rel_dir
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            if d in EXCLUDED_DIRS or _is_venv(full):
                continue
            if full.is_symlink():
                raise PackageError(
                    f"{full.relative_to(root).as_posix()} is a symbolic link; a package holds "
                    "regular files only (copy the target in instead)."
                )
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            full = here / f
            rel = full.relative_to(root).as_posix()
            if f.endswith(EXCLUDED_SUFFIXES):
                continue
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise PackageError(
                    f"{rel} is a symbolic link; a package holds regular files only "
                    "(copy the target in instead)."
                )
            if not stat.S_ISREG(st.st_mode):
                raise PackageError(f"{rel} is not a regular file; a package holds files only.")
            out[rel] = full


def package_paths(root: Path, definition: ServiceDefinition) -> dict[str, Path]:
    """Package path -> file, for the service at ``root`` (see the module doc for the rules)."""
    files: dict[str, Path] = {}
    csdef = root / DEFINITION_FILE
    files[DEFINITION_FILE] = csdef
    for cfg in sorted(root.glob("*.cscfg")):
        if cfg.is_file() and not cfg.is_symlink():
            files[cfg.name] = cfg
    dirs: set[str] = set()
    for role in definition.roles:
        dirs.add(role.name)
        for site in role.sites:
            if site.physical_directory:
                dirs.add(site.physical_directory)
            dirs.update(v.physical_directory for v in site.virtual_applications)
            dirs.update(d.physical_directory for d in site.virtual_directories)
            for va in site.virtual_applications:
                dirs.update(d.physical_directory for d in va.virtual_directories)
        dirs.update(c.source_directory for c in role.contents)
    for d in sorted(dirs):
        norm = d.replace("\\", "/").strip("/")
        if norm in ("", "."):
            raise PackageError(
                f"a physicalDirectory or SourceDirectory is the service directory itself ('{d}'); "
                "give each role and site its own folder."
            )
        if (root / norm).is_dir():
            _walk(root, norm, files)
    return files


def _zipinfo(name: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so external_attr carries permissions
    info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
    return info


def build_bytes(files: dict[str, bytes], executables: frozenset[str] = frozenset()) -> bytes:
    """The package bytes for ``files`` (package path -> content), manifest included."""
    if MANIFEST_NAME in files:
        raise PackageError(f"'{MANIFEST_NAME}' is reserved for the package manifest.")
    entries = [
        {
            "path": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "executable": name in executables,
        }
        for name, data in sorted(files.items())
    ]
    manifest = json.dumps(
        {"format": FORMAT, "files": entries}, sort_keys=True, indent=1, ensure_ascii=True
    ).encode("ascii")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(_zipinfo(MANIFEST_NAME, False), manifest, compresslevel=9)
        for name, data in sorted(files.items()):
            zf.writestr(_zipinfo(name, name in executables), data, compresslevel=9)
    return buf.getvalue()


def build_package(
    service_dir: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    limits: Limits = AZURE_LIMITS,
) -> BuiltPackage:
    """Validate the service in ``service_dir`` and write its package to ``output``.

    Raises ``ModelError`` if the service is invalid and ``PackageError`` if its files cannot be
    packaged. The output is written to a temporary name and renamed into place.
    """
    root = Path(service_dir)
    if not root.is_dir():
        raise PackageError(f"{root} is not a directory; package a service directory.")
    service = load_service(root, config, limits=limits)
    paths = package_paths(root, service.definition)
    out = Path(output).resolve()
    contents: dict[str, bytes] = {}
    executables: set[str] = set()
    for name, path in paths.items():
        if path.resolve() == out:
            continue
        try:
            contents[name] = path.read_bytes()
            if path.stat().st_mode & 0o111:
                executables.add(name)
        except OSError as exc:
            raise PackageError(f"{name} cannot be read: {exc.strerror or exc}.") from exc
    data = build_bytes(contents, frozenset(executables))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return BuiltPackage(out, len(contents), len(data), hashlib.sha256(data).hexdigest(), service)
