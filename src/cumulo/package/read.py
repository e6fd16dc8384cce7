"""Read a ``.cspkg`` safely: every entry checked, every digest verified, nothing trusted.

``open_package(path_or_bytes)`` refuses, each with its own sentence:
absolute paths, drive letters and backslashes, ``..`` and empty path parts, symbolic links and
special files, duplicate names (exact or differing only in case), encrypted entries, unknown
compression, an entry or a total larger than ``PackageLimits``, a compression ratio beyond
``max_ratio`` (zip bombs) — checked on the declared sizes *and* while inflating, since headers
can lie — a missing or malformed manifest, a file the manifest does not list or lists but is
missing, and a size or sha256 that does not match.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cumulo.errors import PackageError
from cumulo.model.service import (
    CONFIG_PREFERENCE,
    DEFINITION_FILE,
    Service,
    read_file,
    service_from_bytes,
)
from cumulo.model.validate import AZURE_LIMITS, Limits
from cumulo.package.build import FORMAT, MANIFEST_NAME

_DRIVE = re.compile(r"^[A-Za-z]:")
# What zipfile raises on damaged archives (it is not consistent about it).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
    zlib.error,
    UnicodeDecodeError,
)


@dataclass(frozen=True)
class PackageLimits:
    """Caps applied while reading a package (bytes unless noted)."""

    max_package_bytes: int = 1024 * 1024 * 1024
    """The .cspkg file itself (1 GiB)."""
    max_entry_bytes: int = 512 * 1024 * 1024
    """One file, uncompressed (512 MiB)."""
    max_total_bytes: int = 2 * 1024 * 1024 * 1024
    """All files together, uncompressed (2 GiB)."""
    max_entries: int = 100_000
    """Number of entries."""
    max_ratio: int = 200
    """Uncompressed / compressed size of an entry above ``ratio_floor`` bytes (zip bombs)."""
    ratio_floor: int = 1024 * 1024
    """Entries smaller than this are never refused for their ratio."""


@dataclass(frozen=True)
class PackageEntry:
    """One verified file of a package."""

    path: str
    size: int
    sha256: str
    executable: bool


@dataclass(frozen=True)
class Package:
    """A verified package: its files (path -> bytes) and their manifest entries."""

    name: str
    sha256: str
    entries: Mapping[str, PackageEntry]
    contents: Mapping[str, bytes]

    def read(self, path: str) -> bytes:
        """The bytes of ``path``; ``PackageError`` if the package has no such file."""
        try:
            return self.contents[path]
        except KeyError:
            raise PackageError(f"{self.name} holds no file '{path}'.") from None

    @property
    def configurations(self) -> tuple[str, ...]:
        """The ``.cscfg`` files at the package root, sorted."""
        return tuple(sorted(p for p in self.contents if "/" not in p and p.endswith(".cscfg")))

    def extract(self, destination: str | Path) -> Path:
        """Write every file under ``destination`` (created; must be empty if it exists)."""
        dest = Path(destination)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise PackageError(f"{dest} is not empty; extract a package into a new directory.")
        root = dest.resolve()
        for path, data in sorted(self.contents.items()):
            target = (root / path).resolve()
            if root not in target.parents:
                raise PackageError(f"{self.name}: entry '{path}' would leave {dest}.")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(target, 0o755 if self.entries[path].executable else 0o644)
        return dest


def _check_name(pkg: str, name: str) -> str | None:
    """Why entry ``name`` is unsafe, or None."""
    if "\x00" in name:
        return f"{pkg}: entry {name!r} has a NUL character in its name."
    if "\\" in name:
        return f"{pkg}: entry '{name}' uses backslashes; package paths use '/'."
    if name.startswith("/") or _DRIVE.match(name):
        return f"{pkg}: entry '{name}' is an absolute path; package paths are relative."
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return f"{pkg}: entry '{name}' contains '..'; it would escape the package."
    if any(p in ("", ".") for p in parts):
        return f"{pkg}: entry '{name}' has an empty or '.' path part."
    return None


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, pkg: str, lim: PackageLimits) -> bytes:
    try:
        return _inflate(zf, info, pkg, lim)
    except _ZIP_ERRORS as exc:
        raise PackageError(f"{pkg}: entry '{info.filename}' is corrupt ({exc}).") from None


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, pkg: str, lim: PackageLimits) -> bytes:
    budget = min(info.file_size, lim.max_entry_bytes)
    out = bytearray()
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(1024 * 1024)
            if not chunk:
                break
            out += chunk
            if len(out) > budget:
                raise PackageError(
                    f"{pkg}: entry '{info.filename}' inflates beyond its declared size of "
                    f"{info.file_size} bytes; the package is corrupt or hostile."
                )
            if len(out) > lim.ratio_floor and len(out) > lim.max_ratio * max(info.compress_size, 1):
                raise PackageError(
                    f"{pkg}: entry '{info.filename}' expands more than {lim.max_ratio} times; "
                    "refusing a likely zip bomb."
                )
    return bytes(out)


def open_package(
    source: str | Path | bytes, *, limits: PackageLimits | None = None, name: str | None = None
) -> Package:
    """Open and verify a package from a path or bytes; raise ``PackageError`` on any defect."""
    lim = limits or PackageLimits()
    if isinstance(source, bytes):
        data = source
        pkg = name or "package"
    else:
        path = Path(source)
        pkg = name or path.name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PackageError(f"{path} cannot be read: {exc.strerror or exc}.") from exc
        if size > lim.max_package_bytes:
            raise PackageError(
                f"{pkg} is {size} bytes; cumulo reads packages of at most "
                f"{lim.max_package_bytes} bytes."
            )
        data = path.read_bytes()
    if len(data) > lim.max_package_bytes:
        raise PackageError(
            f"{pkg} is {len(data)} bytes; cumulo reads packages of at most "
            f"{lim.max_package_bytes} bytes."
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise PackageError(f"{pkg} is not a zip archive ({exc}).") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > lim.max_entries:
            raise PackageError(
                f"{pkg} has {len(infos)} entries; cumulo reads at most {lim.max_entries}."
            )
        seen: dict[str, str] = {}
        total = 0
        files: list[zipfile.ZipInfo] = []
        for info in infos:
            why = _check_name(pkg, info.filename)
            if why:
                raise PackageError(why)
            folded = info.filename.rstrip("/").casefold()
            if folded in seen:
                other = seen[folded]
                how = (
                    "twice" if other == info.filename else f"twice ('{other}' differs only in case)"
                )
                raise PackageError(f"{pkg}: entry '{info.filename}' appears {how}.")
            seen[folded] = info.filename
            mode = info.external_attr >> 16
            if info.create_system == 3 and mode:
                if stat.S_ISLNK(mode):
                    raise PackageError(
                        f"{pkg}: entry '{info.filename}' is a symbolic link; packages hold "
                        "regular files only."
                    )
                kind = stat.S_IFMT(mode)  # 0 when the zip tool recorded only permissions
                if kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise PackageError(f"{pkg}: entry '{info.filename}' is not a regular file.")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise PackageError(f"{pkg}: entry '{info.filename}' is encrypted.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise PackageError(
                    f"{pkg}: entry '{info.filename}' uses compression method "
                    f"{info.compress_type}; cumulo reads stored or deflated entries."
                )
            if info.file_size > lim.max_entry_bytes:
                raise PackageError(
                    f"{pkg}: entry '{info.filename}' is {info.file_size} bytes; the limit per "
                    f"file is {lim.max_entry_bytes}."
                )
            if info.file_size > lim.ratio_floor and info.file_size > lim.max_ratio * max(
                info.compress_size, 1
            ):
                raise PackageError(
                    f"{pkg}: entry '{info.filename}' expands {info.file_size} bytes from "
                    f"{info.compress_size}; refusing a likely zip bomb."
                )
            total += info.file_size
            if total > lim.max_total_bytes:
                raise PackageError(
                    f"{pkg} unpacks to more than {lim.max_total_bytes} bytes; refusing it."
                )
            files.append(info)
        by_name = {i.filename: i for i in files}
        if MANIFEST_NAME not in by_name:
            raise PackageError(f"{pkg} has no {MANIFEST_NAME}; it was not built by cumulo package.")
        manifest = _manifest(pkg, _read_entry(zf, by_name[MANIFEST_NAME], pkg, lim))
        listed = {e.path for e in manifest}
        for extra in sorted(set(by_name) - listed - {MANIFEST_NAME}):
            raise PackageError(f"{pkg}: entry '{extra}' is not listed in the manifest.")
        contents: dict[str, bytes] = {}
        entries: dict[str, PackageEntry] = {}
        for entry in manifest:
            found = by_name.get(entry.path)
            if found is None:
                raise PackageError(f"{pkg}: the manifest lists '{entry.path}', which is missing.")
            blob = _read_entry(zf, found, pkg, lim)
            if len(blob) != entry.size:
                raise PackageError(
                    f"{pkg}: entry '{entry.path}' has {len(blob)} bytes; the manifest says "
                    f"{entry.size}."
                )
            if hashlib.sha256(blob).hexdigest() != entry.sha256:
                raise PackageError(
                    f"{pkg}: entry '{entry.path}' does not match its sha256 in the manifest."
                )
            contents[entry.path] = blob
            entries[entry.path] = entry
    if DEFINITION_FILE not in contents:
        raise PackageError(f"{pkg} holds no {DEFINITION_FILE}.")
    return Package(
        pkg,
        hashlib.sha256(data).hexdigest(),
        MappingProxyType(entries),
        MappingProxyType(contents),
    )


def _manifest(pkg: str, raw: bytes) -> list[PackageEntry]:
    try:
        doc: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{pkg}: {MANIFEST_NAME} is not valid JSON ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PackageError(f"{pkg}: {MANIFEST_NAME} is not a {FORMAT} manifest.")
    out: list[PackageEntry] = []
    names: set[str] = set()
    files = doc.get("files")
    if not isinstance(files, list):
        raise PackageError(f"{pkg}: {MANIFEST_NAME} has no list of files.")
    for item in files:
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and isinstance(item.get("size"), int)
            and isinstance(item.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", item["sha256"]) is not None
        )
        if not ok:
            raise PackageError(f"{pkg}: {MANIFEST_NAME} has a malformed entry: {item!r:.200}.")
        why = _check_name(pkg, item["path"])
        if why:
            raise PackageError(why.replace("entry", "manifest entry", 1))
        if item["path"] in names:
            raise PackageError(f"{pkg}: {MANIFEST_NAME} lists '{item['path']}' twice.")
        names.add(item["path"])
        out.append(
            PackageEntry(item["path"], item["size"], item["sha256"], bool(item.get("executable")))
        )
    return out


def load_package_service(
    package: Package,
    config: str | Path | None = None,
    *,
    limits: Limits = AZURE_LIMITS,
) -> Service:
    """Validate the service in ``package`` with ``config`` (a .cscfg path), else the package's
    own configuration (same preference as a directory: ServiceConfiguration.cscfg, .Local,
    .Cloud, or the only one)."""
    if config is not None:
        cfg = read_file(Path(config))
        if not isinstance(cfg, bytes):
            raise PackageError(str(cfg))
        cfg_name = Path(config).name
    else:
        names = package.configurations
        chosen = next((n for n in CONFIG_PREFERENCE if n in names), None)
        if chosen is None and len(names) == 1:
            chosen = names[0]
        if chosen is None:
            raise PackageError(
                f"{package.name} holds no single ServiceConfiguration; pass --config FILE.cscfg."
            )
        cfg, cfg_name = package.read(chosen), chosen
    web_configs = {p: b for p, b in package.contents.items() if p.endswith("web.config")}
    return service_from_bytes(
        package.read(DEFINITION_FILE),
        cfg,
        configuration_file=cfg_name,
        files=web_configs,
        limits=limits,
    )
