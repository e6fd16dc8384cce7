"""The real ``cumulo`` command against a real API server (127.0.0.1, port 0): commands that need
no running instances, exit codes and problem sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import CSDEF, cscfg  # type: ignore[import-not-found]


def run(
    server: tuple[str, str], *args: str, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    url, token = server
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    if home is None:
        env |= {"CUMULO_URL": url, "CUMULO_TOKEN": token}
    else:
        env["CUMULO_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def service_dir(tmp_path: Path) -> Path:
    src = tmp_path / "svc"
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(CSDEF)
    (src / "ServiceConfiguration.cscfg").write_text(cscfg(3))
    (src / "Worker" / "worker.py").write_text("print('hi')\n")
    return src


def test_service_lifecycle_and_exit_codes(server: tuple[str, str]) -> None:
    assert run(server, "service", "create", "shop").returncode == 0
    dup = run(server, "service", "create", "shop")
    assert dup.returncode == 4 and dup.stderr.startswith("error: Service 'shop' already exists.")
    listed = run(server, "service", "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["shop"]
    missing = run(server, "status", "nope")
    assert missing.returncode == 3 and "Service 'nope' does not exist." in missing.stderr
    assert run(server, "service", "delete", "shop").returncode == 0


def test_deploy_no_wait_then_status_json(server: tuple[str, str], tmp_path: Path) -> None:
    out = run(
        server,
        "deploy",
        "tiny",
        str(service_dir(tmp_path)),
        "--slot",
        "staging",
        "--no-wait",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    op = json.loads(out.stdout)
    assert op["kind"] == "CreateDeployment" and op["status"] == "InProgress"
    status = json.loads(run(server, "status", "tiny", "--json").stdout)
    (dep,) = status["deployments"]
    assert dep["slot"] == "staging" and dep["upgrade"] is None and dep["vips"] == {}
    assert [(i["id"], i["role"], i["update_domain"]) for i in dep["instances"]] == [
        ("Worker_IN_0", "Worker", 0),
        ("Worker_IN_1", "Worker", 1),
        ("Worker_IN_2", "Worker", 2),
    ]
    assert {"status", "fault_domain"} <= set(dep["instances"][0])
    shown = json.loads(run(server, "operation", "show", op["id"], "--json").stdout)
    assert shown["id"] == op["id"]
    busy = run(server, "scale", "tiny", "Worker", "5", "--slot", "staging", "--no-wait")
    assert busy.returncode == 4 and "is still in progress" in busy.stderr


def test_the_cli_finds_the_platform_through_its_data_dir(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    home = tmp_path / "home"
    home.mkdir()
    nothing = run(server, "service", "list", home=home)
    assert nothing.returncode == 6 and "No cumulo platform found" in nothing.stderr
    (home / "api.json").write_text(json.dumps({"url": url}))
    (home / "api-token").write_text(token + "\n")
    assert run(server, "service", "list", home=home).returncode == 0
    (home / "api-token").write_text("wrong\n")
    denied = run(server, "service", "list", home=home)
    assert denied.returncode == 5 and "wrong token" in denied.stderr


def test_a_bad_configuration_is_listed_with_file_and_line(
    server: tuple[str, str], tmp_path: Path
) -> None:
    src = service_dir(tmp_path)
    bad = tmp_path / "bad.cscfg"
    bad.write_text(cscfg(2).replace('count="2"', 'count="-1"'))
    out = run(server, "deploy", "tiny", str(src), "--config", str(bad), "--no-wait")
    assert out.returncode == 2
    assert "bad.cscfg" in out.stderr or "ServiceConfiguration" in out.stderr
