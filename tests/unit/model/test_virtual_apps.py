"""A Site's VirtualApplications and VirtualDirectories in the model: their URL paths (nested with
``/``), their apps (web.config or cumulo's attribute), and what validation refuses, each with the
.csdef line: an application without a Python app, a name that is no URL path, two mounts at one
URL path, a directory outside the service directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cumulo.errors import ModelError
from cumulo.model import load_service
from cumulo.model.definition import AppInterface
from cumulo.model.validate import url_path, url_path_problem

SERVICES = Path(__file__).resolve().parents[2] / "fixtures" / "services"
FIXTURE = SERVICES / "virtual-apps"


def test_the_fixture_has_nested_applications_and_directories() -> None:
    service = load_service(FIXTURE)
    apps = {a.path: a for a in service.apps_of("WebRole")}
    assert sorted(apps) == ["/", "/api", "/api/v2"]
    root, api, v2 = apps["/"], apps["/api"], apps["/api/v2"]
    assert (root.directory, str(root.handler), root.source) == (
        "WebRole",
        "app:wsgi_app",
        "web.config",
    )
    assert (api.directory, str(api.handler), api.source) == ("Api", "app:wsgi_app", "web.config")
    assert (v2.directory, v2.interface, v2.source) == ("WebRole/v2", AppInterface.ASGI, "csdef")
    (site,) = service.definition.roles[0].sites
    assert [d.name for d in site.virtual_directories] == ["static"]
    assert [d.physical_directory for d in site.virtual_applications[0].virtual_directories] == [
        "Api\\docs"
    ]


def _edit(tmp_path: Path, old: str, new: str) -> Path:
    svc = tmp_path / "svc"
    shutil.copytree(FIXTURE, svc)
    csdef = svc / "ServiceDefinition.csdef"
    text = csdef.read_text()
    assert old in text
    csdef.write_text(text.replace(old, new))
    return svc


def _problems(svc: Path) -> list[tuple[int | None, str]]:
    with pytest.raises(ModelError) as info:
        load_service(svc)
    return [(p.line, p.message) for p in info.value.problems]


def test_an_application_whose_directory_names_no_app_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    svc = _edit(tmp_path, "", "")
    (svc / "Api" / "web.config").unlink()
    assert _problems(svc) == [
        (
            13,
            "VirtualApplication 'api' of Site 'Web' of role 'WebRole' names no Python app: add "
            "web.config (appSettings WSGI_HANDLER) to 'Api' or set cumulo:wsgiApp / "
            "cumulo:asgiApp on the element.",
        )
    ]


@pytest.mark.parametrize(
    "name,why",
    [
        ("api//v2", "it has an empty segment ('//')."),
        ("api/../v2", "it must not have '.' or '..' segments."),
        ("./v2", "it must not have '.' or '..' segments."),
        ("api?v=2", "a URL path segment holds no control characters, '?', '#' or '%'."),
        ("api%2fv2", "a URL path segment holds no control characters, '?', '#' or '%'."),
        ("/", "it is empty."),
    ],
)
def test_names_are_url_paths(tmp_path: Path, name: str, why: str) -> None:
    svc = _edit(tmp_path, 'name="api/v2"', f'name="{name}"')
    assert _problems(svc) == [
        (
            16,
            f"VirtualApplication '{name}' of Site 'Web' of role 'WebRole' has name '{name}', "
            f"which is not a URL path: {why}",
        )
    ]


def test_url_paths() -> None:
    assert url_path("api") == "/api"
    assert url_path("api\\v2/") == "/api/v2"
    assert url_path_problem("My App") is None  # IIS allows spaces (requests say %20)
    assert url_path_problem("api/v2") is None


def test_two_mounts_at_one_url_path_are_refused(tmp_path: Path) -> None:
    # a VirtualDirectory where an application is (ASCII case does not matter, as in IIS)
    svc = _edit(tmp_path, '<VirtualDirectory name="static"', '<VirtualDirectory name="API"')
    assert _problems(svc) == [
        (
            17,
            "VirtualDirectory 'API' of Site 'Web' of role 'WebRole' takes the URL path '/API', "
            "which VirtualApplication 'api' of Site 'Web' of role 'WebRole' takes already.",
        )
    ]
    # an application's VirtualDirectory at the path of a nested application
    svc = _edit(tmp_path / "2", 'name="docs"', 'name="v2"')
    ((line, message),) = _problems(svc)
    assert line == 16 and message.startswith("VirtualApplication 'api/v2' of Site 'Web'")
    assert message.endswith(
        "takes the URL path '/api/v2', which VirtualDirectory 'v2' of VirtualApplication 'api' "
        "of Site 'Web' of role 'WebRole' takes already."
    )


def test_an_applications_virtual_directory_stays_inside_the_service_directory(
    tmp_path: Path,
) -> None:
    svc = _edit(tmp_path, 'physicalDirectory="Api\\docs"', 'physicalDirectory="..\\docs"')
    problems = _problems(svc)
    assert (
        14,
        "VirtualDirectory 'docs' of VirtualApplication 'api' of Site 'Web' of role 'WebRole' "
        "has physicalDirectory '..\\docs'; it must stay inside the service directory (no '..').",
    ) in problems
