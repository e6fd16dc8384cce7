"""How a Site names its Python app: cumulo attributes, web.config WSGI_HANDLER, PTVS proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.errors import ModelError
from cumulo.model import load_service
from cumulo.model.definition import AppInterface
from cumulo.model.webapp import AppRef, parse_handler

CSDEF = """<?xml version="1.0"?>
<ServiceDefinition name="s" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model">
  <WebRole name="Web">
    <Sites>
      <Site name="Main"{attrs}>
        <Bindings><Binding name="B" endpointName="Http" /></Bindings>
      </Site>
    </Sites>
    <Endpoints><InputEndpoint name="Http" protocol="http" port="80" /></Endpoints>
  </WebRole>
</ServiceDefinition>
"""
CSCFG = """<?xml version="1.0"?>
<ServiceConfiguration serviceName="s" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Web"><Instances count="1" /></Role>
</ServiceConfiguration>
"""


def _service(tmp_path: Path, attrs: str = "", web_config: str | None = None) -> Path:
    (tmp_path / "ServiceDefinition.csdef").write_text(CSDEF.format(attrs=attrs))
    (tmp_path / "ServiceConfiguration.cscfg").write_text(CSCFG)
    (tmp_path / "Web").mkdir()
    if web_config is not None:
        (tmp_path / "Web" / "web.config").write_text(web_config)
    return tmp_path


def _web_config(**settings: str) -> str:
    adds = "".join(f'<add key="{k}" value="{v}" />' for k, v in settings.items())
    return f"<configuration><appSettings>{adds}</appSettings></configuration>"


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("app.wsgi_app", AppRef("app", "wsgi_app")),
        ("pkg.mod:app", AppRef("pkg.mod", "app")),
        (
            "django.core.wsgi.get_wsgi_application()",
            AppRef("django.core.wsgi", "get_wsgi_application", True),
        ),
        ("m:factory()", AppRef("m", "factory", True)),
        ("m:obj.attr", AppRef("m", "obj.attr")),
    ],
)
def test_parse_handler(text: str, ref: AppRef) -> None:
    assert parse_handler(text) == ref


@pytest.mark.parametrize("text", ["app", "1app.x", "a b.c", "m:", "m:f(x)", ""])
def test_bad_handlers(text: str) -> None:
    assert parse_handler(text) is None


def test_wsgi_handler_from_web_config(tmp_path: Path) -> None:
    s = load_service(_service(tmp_path, web_config=_web_config(WSGI_HANDLER="app.application")))
    (app,) = s.site_apps
    assert (app.interface, app.source, str(app.handler)) == (
        AppInterface.WSGI,
        "web.config",
        "app:application",
    )


def test_ptvs_virtualenv_proxy_uses_the_alternative_handler(tmp_path: Path) -> None:
    cfg = _web_config(
        WSGI_ALT_VIRTUALENV_HANDLER="app.wsgi_app",
        WSGI_HANDLER="ptvs_virtualenv_proxy.get_venv_handler()",
    )
    (app,) = load_service(_service(tmp_path, web_config=cfg)).site_apps
    assert app.handler == AppRef("app", "wsgi_app")


def test_cumulo_attribute_wins_over_web_config(tmp_path: Path) -> None:
    path = _service(
        tmp_path, ' cumulo:asgiApp="main:app"', web_config=_web_config(WSGI_HANDLER="a.b")
    )
    (app,) = load_service(path).site_apps
    assert (app.interface, app.source) == (AppInterface.ASGI, "csdef")


def test_no_app_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_service(_service(tmp_path))
    assert str(info.value) == (
        "ServiceDefinition.csdef:6: Site 'Main' of role 'Web' names no Python app: add "
        "web.config (appSettings WSGI_HANDLER) to 'Web' or set cumulo:wsgiApp / cumulo:asgiApp "
        "on the element."
    )


def test_web_config_without_handler(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"web\.config: has no appSettings key WSGI_HANDLER"):
        load_service(_service(tmp_path, web_config=_web_config(PYTHONPATH="x")))


def test_bad_extension_handler(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="has cumulo:asgiApp 'not valid'; expected"):
        load_service(_service(tmp_path, ' cumulo:asgiApp="not valid"'))


def test_both_extension_attributes(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="has both cumulo:wsgiApp and cumulo:asgiApp"):
        load_service(_service(tmp_path, ' cumulo:asgiApp="a:b" cumulo:wsgiApp="a:c"'))


def test_web_config_with_dtd_is_refused(tmp_path: Path) -> None:
    cfg = '<!DOCTYPE c [<!ENTITY x "y">]><configuration/>'
    with pytest.raises(ModelError, match="refuses DTDs"):
        load_service(_service(tmp_path, web_config=cfg))


def test_bad_wsgi_handler_points_at_its_line(tmp_path: Path) -> None:
    cfg = (
        '<configuration>\n<appSettings>\n<add key="WSGI_HANDLER" value="not valid" />\n'
        "</appSettings>\n</configuration>"
    )
    with pytest.raises(ModelError) as info:
        load_service(_service(tmp_path, web_config=cfg))
    assert str(info.value) == (
        "Web/web.config:3: has WSGI_HANDLER 'not valid'; expected 'module.callable' or "
        "'module.factory()'."
    )


def test_a_package_path_is_pointed_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a package; read it with"):
        load_service(tmp_path / "x.cspkg")
