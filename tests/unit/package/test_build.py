"""Building packages: contents, exclusions, reproducibility, and reading them back."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from cumulo.errors import ModelError, PackageError
from cumulo.package import MANIFEST_NAME, build_package, load_package_service, open_package

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "tests" / "fixtures" / "services"


def _copy(name: str, dest: Path) -> Path:
    shutil.copytree(SERVICES / name, dest)
    return dest


def test_guestbook_packages_and_reads_back(tmp_path: Path) -> None:
    built = build_package(ROOT / "examples" / "guestbook", tmp_path / "gb.cspkg")
    pkg = open_package(built.path)
    assert pkg.sha256 == built.sha256
    assert {
        "ServiceConfiguration.Cloud.cscfg",
        "ServiceConfiguration.Local.cscfg",
        "ServiceDefinition.csdef",
        "WebRole/app.py",
        "WebRole/web.config",
        "WorkerRole/worker.py",
    } <= set(pkg.contents)
    assert not [name for name in pkg.contents if "__pycache__" in name or name.endswith(".pyc")]
    service = load_package_service(pkg)
    assert service.definition.name == "guestbook"
    assert [a.source for a in service.site_apps] == ["web.config"]


def test_reproducible_across_copies_and_times(tmp_path: Path) -> None:
    a = _copy("python-web", tmp_path / "a")
    b = _copy("python-web", tmp_path / "b")
    for path in b.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    first = build_package(a, tmp_path / "1.cspkg")
    second = build_package(b, tmp_path / "2.cspkg")
    again = build_package(a, tmp_path / "3.cspkg")
    assert first.path.read_bytes() == second.path.read_bytes() == again.path.read_bytes()
    with zipfile.ZipFile(first.path) as zf:
        infos = zf.infolist()
    assert infos[0].filename == MANIFEST_NAME
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [i.filename for i in infos[1:]] == sorted(i.filename for i in infos[1:])


def test_exclusions(tmp_path: Path) -> None:
    svc = _copy("asgi-site", tmp_path / "svc")
    web = svc / "Web"
    (web / "__pycache__").mkdir()
    (web / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    (web / "stray.pyc").write_bytes(b"x")
    (web / ".git").mkdir()
    (web / ".git" / "HEAD").write_text("ref")
    (web / ".venv").mkdir()
    (web / ".venv" / "pyvenv.cfg").write_text("home = /usr")
    (web / "env").mkdir()
    (web / "env" / "pyvenv.cfg").write_text("home = /usr")
    (web / "env" / "lib.py").write_text("")
    (web / "node_modules").mkdir()
    (web / "node_modules" / "x.js").write_text("")
    (web / "sub").mkdir()
    (web / "sub" / "kept.txt").write_text("kept")
    pkg = open_package(build_package(svc, tmp_path / "p.cspkg").path)
    names = [n for n in pkg.contents if n.startswith("Web/")]
    assert sorted(names) == ["Web/asgi_app.py", "Web/sub/kept.txt", "Web/wsgi_app.py"]


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    svc = _copy("multi-role", tmp_path / "svc")
    (svc / "Cron" / "run.sh").write_text("#!/bin/sh\n")
    (svc / "Cron" / "run.sh").chmod(0o755)
    pkg = open_package(build_package(svc, tmp_path / "p.cspkg").path)
    assert pkg.entries["Cron/run.sh"].executable
    assert not pkg.entries["Cron/cron.py"].executable
    out = pkg.extract(tmp_path / "out")
    assert os.access(out / "Cron" / "run.sh", os.X_OK)
    assert (out / "Front" / "front.py").read_text() == 'print("front")\n'
    assert (out / "shared" / "common.py").exists()


def test_symlinks_are_refused(tmp_path: Path) -> None:
    svc = _copy("multi-role", tmp_path / "svc")
    (svc / "Cron" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(PackageError, match=r"Cron/passwd is a symbolic link"):
        build_package(svc, tmp_path / "p.cspkg")


def test_invalid_service_is_not_packaged(tmp_path: Path) -> None:
    svc = _copy("multi-role", tmp_path / "svc")
    cfg = svc / "ServiceConfiguration.Local.cscfg"
    cfg.write_text(cfg.read_text().replace('count="3"', 'count="0"'))
    with pytest.raises(ModelError, match="Instances count 0"):
        build_package(svc, tmp_path / "p.cspkg")
    assert not (tmp_path / "p.cspkg").exists()


def test_output_inside_the_service_is_left_out(tmp_path: Path) -> None:
    svc = _copy("multi-role", tmp_path / "svc")
    build_package(svc, svc / "Front" / "self.cspkg")
    again = build_package(svc, svc / "Front" / "self.cspkg")
    assert "Front/self.cspkg" not in open_package(again.path).contents


def test_extract_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    pkg = open_package(build_package(SERVICES / "multi-role", tmp_path / "p.cspkg").path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(PackageError, match="is not empty"):
        pkg.extract(tmp_path / "out")


def test_validate_a_package_with_an_outside_config(tmp_path: Path) -> None:
    pkg = open_package(build_package(SERVICES / "python-web", tmp_path / "p.cspkg").path)
    cfg = tmp_path / "other.cscfg"
    text = (SERVICES / "python-web" / "ServiceConfiguration.Cloud.cscfg").read_text()
    cfg.write_text(text.replace('count="3"', 'count="7"'))
    service = load_package_service(pkg, cfg)
    assert service.configuration.roles[0].instances == 7
    assert service.configuration_file == "other.cscfg"
