"""Reading hostile packages: every refusal is a PackageError with its own sentence."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from cumulo.errors import PackageError
from cumulo.package import MANIFEST_NAME, PackageLimits, build_bytes, open_package

CSDEF = b"<ServiceDefinition/>"


def _manifest(files: dict[str, bytes]) -> bytes:
    entries = [
        {"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "executable": False}
        for n, d in files.items()
    ]
    return json.dumps({"format": "cumulo-package/1", "files": entries}).encode()


def _zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    manifest: bytes | None = None,
    with_manifest: bool = True,
) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            if with_manifest:
                files = {
                    (e.filename if isinstance(e, zipfile.ZipInfo) else e): d for e, d in entries
                }
                zf.writestr(MANIFEST_NAME, manifest if manifest is not None else _manifest(files))
            for entry, data in entries:
                zf.writestr(entry, data)
    return buf.getvalue()


def _refused(data: bytes, pattern: str, limits: PackageLimits | None = None) -> None:
    with pytest.raises(PackageError, match=pattern):
        open_package(data, limits=limits, name="evil.cspkg")


def test_a_good_package() -> None:
    data = build_bytes({"ServiceDefinition.csdef": CSDEF, "W/x.py": b"print()"})
    pkg = open_package(data)
    assert pkg.read("W/x.py") == b"print()"
    with pytest.raises(PackageError, match="holds no file 'nope'"):
        pkg.read("nope")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "is an absolute path"),
        ("C:/Windows/evil.dll", "is an absolute path"),
        ("../evil.py", r"contains '\.\.'"),
        ("W/../../evil.py", r"contains '\.\.'"),
        ("W\\..\\evil.py", "uses backslashes"),
        ("W//x.py", "has an empty or '.' path part"),
        ("W/./x.py", "has an empty or '.' path part"),
    ],
)
def test_unsafe_names(name: str, why: str) -> None:
    _refused(_zip([("ServiceDefinition.csdef", CSDEF), (name, b"x")]), f"evil.cspkg: entry .*{why}")


def test_symlink_entry() -> None:
    info = zipfile.ZipInfo("W/link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    _refused(
        _zip([("ServiceDefinition.csdef", CSDEF), (info, b"/etc/passwd")]), "is a symbolic link"
    )


def test_device_entry() -> None:
    info = zipfile.ZipInfo("W/dev")
    info.create_system = 3
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    _refused(_zip([("ServiceDefinition.csdef", CSDEF), (info, b"")]), "is not a regular file")


def test_duplicate_names() -> None:
    _refused(
        _zip([("ServiceDefinition.csdef", CSDEF), ("W/a.py", b"1"), ("W/a.py", b"2")]),
        "entry 'W/a.py' appears twice",
    )


def test_names_differing_only_in_case() -> None:
    _refused(
        _zip([("ServiceDefinition.csdef", CSDEF), ("W/a.py", b"1"), ("W/A.py", b"2")]),
        "differs only in case",
    )


def test_oversized_entry() -> None:
    data = _zip([("ServiceDefinition.csdef", CSDEF), ("W/big", b"x" * 5000)])
    _refused(data, "is 5000 bytes; the limit per file is 1000", PackageLimits(max_entry_bytes=1000))


def test_oversized_total() -> None:
    files = [("ServiceDefinition.csdef", CSDEF)] + [(f"W/{i}", b"y" * 400) for i in range(5)]
    _refused(_zip(files), "unpacks to more than 1000 bytes", PackageLimits(max_total_bytes=1000))


def test_too_many_entries() -> None:
    files = [("ServiceDefinition.csdef", CSDEF)] + [(f"W/{i}", b"") for i in range(20)]
    _refused(_zip(files), "has 22 entries; cumulo reads at most 10", PackageLimits(max_entries=10))


def test_oversized_package() -> None:
    data = _zip([("ServiceDefinition.csdef", CSDEF)])
    _refused(data, "cumulo reads packages of at most 10 bytes", PackageLimits(max_package_bytes=10))


def test_zip_bomb() -> None:
    data = _zip([("ServiceDefinition.csdef", CSDEF), ("W/zeros", b"\0" * (8 * 1024 * 1024))])
    assert len(data) < 100_000
    _refused(data, "refusing a likely zip bomb")


def test_zip_bomb_ratio_is_configurable() -> None:
    data = _zip([("ServiceDefinition.csdef", CSDEF), ("W/zeros", b"\0" * (4 * 1024 * 1024))])
    open_package(data, limits=PackageLimits(ratio_floor=10 * 1024 * 1024))  # under the floor
    _refused(data, "likely zip bomb", PackageLimits(max_ratio=100, ratio_floor=1024 * 1024))


def test_corrupt_entry() -> None:
    payload = bytes(range(256)) * 64
    data = bytearray(_zip([("ServiceDefinition.csdef", CSDEF), ("W/data", payload)]))
    local = data.rfind(b"PK\x03\x04")  # the last local header is W/data's
    data[local + 30 + len("W/data") + 10] ^= 0xFF  # flip a byte of its compressed data
    _refused(bytes(data), "entry 'W/data' is corrupt")


def test_encrypted_entry() -> None:
    data = bytearray(_zip([("ServiceDefinition.csdef", CSDEF)], with_manifest=True))
    # set the "encrypted" flag bit in the central directory entry of the csdef
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 0x1
    _refused(bytes(data), "is encrypted")


def test_not_a_zip() -> None:
    _refused(b"this is not a zip", "is not a zip archive")


def test_missing_manifest() -> None:
    _refused(
        _zip([("ServiceDefinition.csdef", CSDEF)], with_manifest=False), "has no cumulo-manifest"
    )


def test_digest_mismatch() -> None:
    manifest = _manifest({"ServiceDefinition.csdef": b"something else!!!!!!"})
    data = _zip([("ServiceDefinition.csdef", CSDEF)], manifest=manifest)
    _refused(data, "does not match its sha256")


def test_size_mismatch() -> None:
    manifest = _manifest({"ServiceDefinition.csdef": b"short"})
    _refused(_zip([("ServiceDefinition.csdef", CSDEF)], manifest=manifest), "the manifest says 5")


def test_file_not_in_manifest() -> None:
    manifest = _manifest({"ServiceDefinition.csdef": CSDEF})
    data = _zip([("ServiceDefinition.csdef", CSDEF), ("W/extra.py", b"")], manifest=manifest)
    _refused(data, "entry 'W/extra.py' is not listed in the manifest")


def test_manifest_lists_a_missing_file() -> None:
    manifest = _manifest({"ServiceDefinition.csdef": CSDEF, "W/gone.py": b""})
    _refused(
        _zip([("ServiceDefinition.csdef", CSDEF)], manifest=manifest),
        "lists 'W/gone.py', which is missing",
    )


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        (b"{not json", "is not valid JSON"),
        (b'{"format": "other"}', "is not a cumulo-package/1 manifest"),
        (b'{"format": "cumulo-package/1", "files": [{"path": 1}]}', "has a malformed entry"),
    ],
)
def test_malformed_manifest(manifest: bytes, why: str) -> None:
    _refused(_zip([("ServiceDefinition.csdef", CSDEF)], manifest=manifest), why)


def test_package_without_definition() -> None:
    _refused(_zip([("W/x.py", b"")]), "holds no ServiceDefinition.csdef")


def test_reserved_manifest_name() -> None:
    with pytest.raises(PackageError, match="is reserved"):
        build_bytes({MANIFEST_NAME: b"x"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="cannot be read"):
        open_package(tmp_path / "nope.cspkg")
