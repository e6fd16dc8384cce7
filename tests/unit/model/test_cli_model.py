"""`cumulo validate` and `cumulo package` as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cumulo.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "tests" / "fixtures" / "services"


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


def test_validate_valid_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate", str(ROOT / "examples" / "guestbook")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("guestbook: valid (ServiceDefinition.csdef + ")
    assert "WebRole WebRole: 2 x Small; endpoints: HttpIn http:80" in out
    assert "site Web: wsgi app app:application (from web.config)" in out
    assert "program: python -m cumulo.sdk.run worker:Worker" in out


def test_validate_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc = shutil.copytree(SERVICES / "multi-role", tmp_path / "svc")
    cfg = svc / "ServiceConfiguration.Local.cscfg"
    cfg.write_text(cfg.read_text().replace('count="3"', 'count="0"').replace('"Cron"', '"Crn"'))
    assert _run(["validate", str(svc)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "ServiceDefinition.csdef:40: WorkerRole 'Cron' has no <Role name=\"Cron\"> in "
        "ServiceConfiguration.Local.cscfg.",
        "ServiceConfiguration.Local.cscfg:5: Role 'Back' has Instances count 0; the minimum is 1.",
        "ServiceConfiguration.Local.cscfg:6: Role 'Crn' is not defined in "
        "ServiceDefinition.csdef; did you mean 'Cron'?",
    ]
    assert captured.err == "3 problems found.\n"


def test_validate_with_config_and_skip_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "big.cscfg"
    text = (SERVICES / "multi-role" / "ServiceConfiguration.Local.cscfg").read_text()
    cfg.write_text(text.replace('count="3"', 'count="60"'))
    target = str(SERVICES / "multi-role")
    assert _run(["validate", target, "--config", str(cfg)]) == 2
    assert "Azure allows at most 50 per deployment" in capsys.readouterr().out
    assert _run(["validate", target, "--config", str(cfg), "--skip-limits"]) == 0
    monkeypatch.setenv("_CSRUN_SKIP_LIMIT_VALIDATION", "1")
    assert _run(["validate", target, "--config", str(cfg)]) == 0


def test_package_then_validate_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nw.cspkg"
    assert _run(["package", str(SERVICES / "node-worker"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (")
    assert _run(["validate", str(out)]) == 0
    assert "nodeworker: valid" in capsys.readouterr().out


def test_validate_hostile_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.cspkg"
    bad.write_bytes(b"not a zip at all")
    assert _run(["validate", str(bad)]) == 2
    assert (
        capsys.readouterr().err
        == "error: bad.cspkg is not a zip archive (File is not a zip file).\n"
    )


def test_netfx_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate", str(SERVICES / "netfx-legacy")]) == 0
    err = capsys.readouterr().err
    assert "warning: ServiceDefinition.csdef:9: NetFxEntryPoint 'Legacy.dll'" in err


def test_real_command_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "ServiceDefinition.csdef").write_text("<ServiceDefinition")
    (tmp_path / "ServiceConfiguration.cscfg").write_text("<x/>")
    proc = subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout.startswith("ServiceDefinition.csdef:1: is not well-formed XML")
