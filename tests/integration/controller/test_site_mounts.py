"""A Site's VirtualApplications and VirtualDirectories from the package to the VIP.

The controller's spec of an instance mounts them at their URL paths; directories outside the
role folder (``Api/``, ``Static/`` next to ``WebRole/``, Azure's ``physicalDirectory="..\\Api"``)
are copied into the role's source under ``sitesroot/``, once per package. On a real ``cumulo
serve`` the tests/fixtures/services/virtual-apps service answers through its VIP at ``/``,
``/api/...`` (another app, from its own folder), ``/api/v2/...`` (a nested ASGI app) and
``/static/...`` (static files); an application without a Python app is refused at deploy with
its .csdef line."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import httpx
import pytest

from cumulo.controller.specs import extract_package, instance_spec
from cumulo.errors import UnsupportedError
from cumulo.model import load_service
from cumulo.package.build import build_package
from cumulo.state.spec import SiteAppSpec, VirtualDirectorySpec

from ...platform_harness import Platform, running  # type: ignore[import-not-found]

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "services" / "virtual-apps"


def spec_of(service_dir: Path, data: Path):  # type: ignore[no-untyped-def]
    built = build_package(service_dir, data / "svc.cspkg")
    raw = built.path.read_bytes()
    root = extract_package(data, f"sha256:{built.sha256}", raw)
    return root, instance_spec(
        load_service(service_dir),
        deployment_id="d1",
        service_name="vapps",
        slot="production",
        role_name="WebRole",
        instance_id="WebRole_IN_0",
        update_domain=0,
        fault_domain=0,
        approot_root=root,
    )


def test_the_spec_mounts_apps_and_directories_and_copies_what_lies_outside_the_role(
    tmp_path: Path,
) -> None:
    root, spec = spec_of(FIXTURE, tmp_path)
    site = spec.site
    assert site is not None
    assert (site.kind, site.app, site.physical_directory) == ("wsgi", "app:wsgi_app", "")
    assert site.apps == (
        SiteAppSpec("/api", "wsgi", "app:wsgi_app", "sitesroot/Api"),
        SiteAppSpec("/api/v2", "asgi", "app_v2:app", "v2"),
    )
    assert site.directories == (
        VirtualDirectorySpec("/static", "sitesroot/Static"),
        VirtualDirectorySpec("/api/docs", "sitesroot/Api/docs"),
    )
    source = Path(spec.approot_source)
    assert source == root / ".sites" / "WebRole"
    assert (source / "app.py").read_text() == (FIXTURE / "WebRole" / "app.py").read_text()
    assert (source / "sitesroot" / "Api" / "helper.py").is_file()
    assert (source / "sitesroot" / "Api" / "docs" / "readme.txt").is_file()  # with its app
    assert (source / "sitesroot" / "Static" / "css" / "site.css").is_file()
    assert sorted(p.name for p in (source / "sitesroot").iterdir()) == ["Api", "Static"]
    # built once per package: the next instance's spec reuses it
    _, again = spec_of(FIXTURE, tmp_path)
    assert again.approot_source == spec.approot_source and again.site == site


def test_a_role_with_its_own_sitesroot_folder_is_refused(tmp_path: Path) -> None:
    svc = tmp_path / "svc"
    shutil.copytree(FIXTURE, svc)
    (svc / "WebRole" / "sitesroot").mkdir()
    (svc / "WebRole" / "sitesroot" / "keep.txt").write_text("mine")
    with pytest.raises(UnsupportedError, match="Role 'WebRole' has its own 'sitesroot' folder"):
        spec_of(svc, tmp_path / "data")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_virtual_applications_and_directories_answer_through_the_vip(tmp_path: Path) -> None:
    src = tmp_path / "vapps"
    shutil.copytree(FIXTURE, src)
    csdef = src / "ServiceDefinition.csdef"
    csdef.write_text(csdef.read_text().replace('port="80"', f'port="{free_port()}"'))
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    (broken / "Api" / "web.config").unlink()

    with running(lambda data: Platform(data), "cumulo-vapps-") as platform:
        assert platform.run_cli("service", "create", "vapps").returncode == 0
        # an application whose directory names no Python app: refused before anything runs
        out = platform.run_cli("deploy", "vapps", str(broken), "--timeout", "90")
        assert out.returncode == 2, out.stdout + out.stderr
        assert (
            "ServiceDefinition.csdef:13: VirtualApplication 'api' of Site 'Web' of role "
            "'WebRole' names no Python app"
        ) in out.stderr, out.stderr
        out = platform.run_cli("deploy", "vapps", str(src), "--timeout", "90")
        assert out.returncode == 0, out.stderr + platform.logs()
        vip = platform.client.get_deployment("vapps", "production")["vips"]["HttpIn"]
        with httpx.Client(base_url=f"http://{vip}", timeout=10) as http:
            assert http.get("/home").text == "root '' '/home'"
            assert http.get("/api/users/7").text == "api '/api' '/users/7'"
            assert http.get("/Api/v2/items").text == "v2 '/Api/v2' '/Api/v2/items'"
            css = http.get("/static/css/site.css")
            assert (css.status_code, css.headers["content-type"]) == (200, "text/css")
            assert css.text == (FIXTURE / "Static" / "css" / "site.css").read_text()
            assert http.get("/api/docs/readme.txt").text.startswith("The api's documentation.")
            assert http.get("/static/%2e%2e/%2e%2e/ServiceDefinition.csdef").status_code == 404
            assert http.get("/static/").status_code == 403
