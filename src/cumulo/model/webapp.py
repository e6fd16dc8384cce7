"""How a web role's Site names its Python app.

Order of precedence, per Site (and per VirtualApplication):

1. cumulo's extension attribute on the element in the csdef:
   ``cumulo:wsgiApp="package.module:app"`` or ``cumulo:asgiApp="package.module:app"``
   (namespace ``cumulo.model.definition.CUMULO_NAMESPACE``).
2. ``web.config`` in the Site's directory, ``configuration/appSettings/add[@key='WSGI_HANDLER']``
   — what Azure's Python web roles used with wfastcgi. When it is the PTVS virtualenv proxy
   (``ptvs_virtualenv_proxy.get_venv_handler()``), ``WSGI_ALT_VIRTUALENV_HANDLER`` is used.

Handler syntax: ``module:attr`` or wfastcgi's dotted ``module.attr``; a trailing ``()`` means
"call this with no arguments to get the app" (as wfastcgi does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cumulo.errors import Problem
from cumulo.model.definition import AppInterface, SiteAppDeclaration
from cumulo.model.xmlsafe import Node, parse_xml

PTVS_PROXY = "ptvs_virtualenv_proxy.get_venv_handler()"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_HANDLER = re.compile(rf"^({_IDENT}(?:\.{_IDENT})*)(?::({_IDENT}(?:\.{_IDENT})*))?(\(\))?$")


@dataclass(frozen=True)
class AppRef:
    """A parsed handler: import ``module``, take ``attribute`` (dotted), call it if ``call``."""

    module: str
    attribute: str
    call: bool = False

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}{'()' if self.call else ''}"


@dataclass(frozen=True)
class SiteApp:
    """The Python app of one Site (``path`` "/") or VirtualApplication (``path`` "/name").

    ``directory`` is relative to the service directory; ``source`` says where the name came
    from (``csdef`` or ``web.config``); ``python_path`` is web.config's PYTHONPATH if any.
    """

    role: str
    site: str
    path: str
    interface: AppInterface
    handler: AppRef
    directory: str
    source: str
    python_path: str | None = None


def parse_handler(text: str) -> AppRef | None:
    """``module:attr``, ``module.attr`` or either with ``()``; None if malformed."""
    m = _HANDLER.match(text.strip())
    if m is None:
        return None
    module, attr, call = m.group(1), m.group(2), bool(m.group(3))
    if attr is None:
        if "." not in module:
            return None
        module, attr = module.rsplit(".", 1)
    return AppRef(module, attr, call)


def read_app_settings(
    data: bytes, filename: str
) -> tuple[dict[str, tuple[str, int]], list[Problem]]:
    """``configuration/appSettings/add key= value=`` of a web.config: key -> (value, line).

    Everything else in web.config (IIS handlers, rewrite rules...) is ignored.
    """
    tree = parse_xml(data, filename)
    if isinstance(tree, Problem):
        return {}, [tree]
    settings: dict[str, tuple[str, int]] = {}
    if tree.tag != "configuration":
        return {}, [
            Problem(filename, tree.line, f"has root <{tree.tag}>; expected <configuration>.")
        ]
    for block in _children(tree, "appSettings"):
        for add in _children(block, "add"):
            key = add.attrs.get("key")
            if key is not None:
                settings[key] = (add.attrs.get("value", ""), add.line)
    return settings, []


def _children(node: Node, tag: str) -> list[Node]:
    return [c for c in node.children if c.tag == tag]


def decide_app(
    *,
    role: str,
    site: str,
    path: str,
    directory: str,
    declared: SiteAppDeclaration | None,
    web_config: bytes | None,
    web_config_name: str,
    csdef_name: str,
    line: int | None,
) -> tuple[SiteApp | None, list[Problem]]:
    """Decide one site's app from its csdef declaration and web.config bytes (if present)."""
    where = (
        f"Site '{site}' of role '{role}'"
        if path == "/"
        else (f"VirtualApplication '{path[1:]}' of Site '{site}' of role '{role}'")
    )
    if declared is not None:
        ref = parse_handler(declared.handler)
        attr = "cumulo:wsgiApp" if declared.interface is AppInterface.WSGI else "cumulo:asgiApp"
        if ref is None:
            return None, [
                Problem(
                    csdef_name,
                    declared.line,
                    f"{where} has {attr} '{declared.handler}'; expected 'module:callable' "
                    "(for example 'app:application').",
                )
            ]
        return SiteApp(role, site, path, declared.interface, ref, directory, "csdef"), []
    if web_config is None:
        return None, [
            Problem(
                csdef_name,
                line,
                f"{where} names no Python app: add web.config (appSettings WSGI_HANDLER) to "
                f"'{directory}' or set cumulo:wsgiApp / cumulo:asgiApp on the element.",
            )
        ]
    settings, problems = read_app_settings(web_config, web_config_name)
    if problems:
        return None, problems
    entry = settings.get("WSGI_HANDLER")
    if entry is not None and entry[0].strip() == PTVS_PROXY:
        entry = settings.get("WSGI_ALT_VIRTUALENV_HANDLER", entry)
    if entry is None:
        return None, [
            Problem(
                web_config_name,
                None,
                f"has no appSettings key WSGI_HANDLER, so {where} names no Python app.",
            )
        ]
    handler, handler_line = entry
    ref = parse_handler(handler)
    if ref is None:
        return None, [
            Problem(
                web_config_name,
                handler_line,
                f"has WSGI_HANDLER '{handler}'; expected 'module.callable' or 'module.factory()'.",
            )
        ]
    return (
        SiteApp(
            role,
            site,
            path,
            AppInterface.WSGI,
            ref,
            directory,
            "web.config",
            settings.get("PYTHONPATH", (None, 0))[0],
        ),
        [],
    )
