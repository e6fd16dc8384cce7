"""A whole service read from a directory: definition + configuration + site apps, validated.

``load_service(path, config=None)`` is the entry point the rest of cumulo uses. ``path`` is a
service directory (holding ``ServiceDefinition.csdef`` and one folder per role) or a ``.csdef``
file. The configuration is ``config`` if given, else the first of ``ServiceConfiguration.cscfg``,
``ServiceConfiguration.Local.cscfg``, ``ServiceConfiguration.Cloud.cscfg`` or the only
``*.cscfg`` next to the definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cumulo.errors import ModelError, Problem
from cumulo.model.configuration import ServiceConfiguration
from cumulo.model.definition import RoleKind, ServiceDefinition
from cumulo.model.parse import read_configuration, read_definition
from cumulo.model.validate import AZURE_LIMITS, Limits, url_path, validate
from cumulo.model.webapp import SiteApp, decide_app
from cumulo.model.xmlsafe import MAX_XML_BYTES

DEFINITION_FILE = "ServiceDefinition.csdef"
CONFIG_PREFERENCE = (
    "ServiceConfiguration.cscfg",
    "ServiceConfiguration.Local.cscfg",
    "ServiceConfiguration.Cloud.cscfg",
)


@dataclass(frozen=True)
class Service:
    """A validated service: its definition, configuration and the Python app of every Site.

    ``root`` is the service directory (None when read from memory); ``definition_file`` and
    ``configuration_file`` are the names used in messages.
    """

    definition: ServiceDefinition
    configuration: ServiceConfiguration
    site_apps: tuple[SiteApp, ...] = ()
    root: Path | None = None
    definition_file: str = DEFINITION_FILE
    configuration_file: str = "ServiceConfiguration.cscfg"

    def apps_of(self, role: str) -> tuple[SiteApp, ...]:
        """The site apps of role ``role`` (Sites and VirtualApplications, in file order)."""
        return tuple(a for a in self.site_apps if a.role == role)


def read_file(path: Path, max_bytes: int = MAX_XML_BYTES) -> bytes | Problem:
    """The bytes of ``path``, or a Problem when it is missing, unreadable or too large."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Problem(
                path.name,
                None,
                f"is {size} bytes; cumulo reads files of at most {max_bytes} bytes.",
            )
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except FileNotFoundError:
        return Problem(str(path), None, "does not exist.")
    except OSError as exc:
        return Problem(str(path), None, f"cannot be read: {exc.strerror or exc}.")


def find_configuration(directory: Path) -> Path | None:
    """The configuration file ``load_service`` picks in ``directory`` (see the module doc)."""
    for name in CONFIG_PREFERENCE:
        if (directory / name).is_file():
            return directory / name
    found = sorted(directory.glob("*.cscfg"))
    return found[0] if len(found) == 1 else None


def load_service(
    path: str | Path,
    config: str | Path | None = None,
    *,
    limits: Limits = AZURE_LIMITS,
) -> Service:
    """Read and validate the service at ``path``; raise ``ModelError`` with every problem."""
    p = Path(path)
    if p.suffix.lower() == ".cspkg":
        raise ModelError(
            [
                Problem(
                    str(p),
                    None,
                    "is a package; read it with cumulo.package.load_package_service "
                    "(cumulo validate does).",
                )
            ]
        )
    if p.is_dir():
        root, csdef = p, p / DEFINITION_FILE
        if not csdef.is_file():
            defs = sorted(p.glob("*.csdef"))
            if len(defs) == 1:
                csdef = defs[0]
            else:
                raise ModelError([Problem(str(p), None, f"holds no {DEFINITION_FILE}.")])
    else:
        root, csdef = p.parent, p
    cfg_path = Path(config) if config is not None else find_configuration(root)
    if cfg_path is None:
        raise ModelError(
            [
                Problem(
                    str(root),
                    None,
                    "holds no ServiceConfiguration.cscfg (nor .Local/.Cloud); pass --config.",
                )
            ]
        )
    def_bytes = read_file(csdef)
    cfg_bytes = read_file(cfg_path)
    problems = [b for b in (def_bytes, cfg_bytes) if isinstance(b, Problem)]
    if problems:
        raise ModelError(problems)
    assert isinstance(def_bytes, bytes) and isinstance(cfg_bytes, bytes)
    return service_from_bytes(
        def_bytes,
        cfg_bytes,
        definition_file=csdef.name,
        configuration_file=cfg_path.name,
        root=root,
        limits=limits,
    )


def service_from_bytes(
    definition: bytes,
    configuration: bytes,
    *,
    definition_file: str = DEFINITION_FILE,
    configuration_file: str = "ServiceConfiguration.cscfg",
    root: Path | None = None,
    files: dict[str, bytes] | None = None,
    limits: Limits = AZURE_LIMITS,
) -> Service:
    """Parse and validate from bytes. Site apps are decided from ``root`` (a directory) or
    ``files`` (relative path -> bytes, e.g. a package's web.config files); with neither, the
    csdef's cumulo attributes alone decide and a Site without one is not reported."""
    sd, problems = read_definition(definition, definition_file)
    sc, cfg_problems = read_configuration(configuration, configuration_file)
    problems += cfg_problems
    if sd is not None:
        problems += validate(
            sd,
            sc,
            definition_file=definition_file,
            configuration_file=configuration_file,
            limits=limits,
        )
    apps: list[SiteApp] = []
    if sd is not None:
        app_problems, apps = _site_apps(sd, definition_file, root, files)
        problems += app_problems
        if root is not None:
            problems += _layout_problems(sd, definition_file, root)
    if problems or sd is None or sc is None:
        order = {definition_file: 0, configuration_file: 1}
        problems.sort(key=lambda p: (order.get(p.file, 2), p.file, p.line or 0))
        raise ModelError(problems or [Problem(definition_file, None, "could not be read.")])
    return Service(sd, sc, tuple(apps), root, definition_file, configuration_file)


def _norm(path: str) -> str:
    return path.replace("\\", "/").strip("/") or "."


def _site_apps(
    sd: ServiceDefinition,
    definition_file: str,
    root: Path | None,
    files: dict[str, bytes] | None,
) -> tuple[list[Problem], list[SiteApp]]:
    problems: list[Problem] = []
    apps: list[SiteApp] = []
    for role in sd.roles:
        if role.kind is not RoleKind.WEB:
            continue
        for site in role.sites:
            targets = [
                (
                    "/",
                    _norm(site.physical_directory) if site.physical_directory else role.name,
                    site.app,
                    site.line,
                )
            ]
            targets += [
                (url_path(v.name), _norm(v.physical_directory), v.app, v.line)
                for v in site.virtual_applications
            ]
            for mount, directory, declared, line in targets:
                web_config: bytes | None = None
                rel = "web.config" if directory == "." else f"{directory}/web.config"
                if declared is None:
                    if root is not None:
                        got = read_file(root / rel)
                        if isinstance(got, bytes):
                            web_config = got
                        elif (root / rel).exists():
                            problems.append(got)
                            continue
                    elif files is not None:
                        web_config = files.get(rel)
                    else:
                        continue
                app, found = decide_app(
                    role=role.name,
                    site=site.name,
                    path=mount,
                    directory=directory,
                    declared=declared,
                    web_config=web_config,
                    web_config_name=rel,
                    csdef_name=definition_file,
                    line=line,
                )
                problems += found
                if app is not None:
                    apps.append(app)
    return problems, apps


def _layout_problems(sd: ServiceDefinition, definition_file: str, root: Path) -> list[Problem]:
    """Folders the definition refers to that are missing from the service directory."""
    out: list[Problem] = []
    for role in sd.roles:
        if not (root / role.name).is_dir():
            out.append(
                Problem(
                    definition_file,
                    role.line,
                    f"{role.kind.value} '{role.name}' has no folder '{role.name}' next to "
                    f"{definition_file}; put the role's files there.",
                )
            )
        dirs = []
        for site in role.sites:
            if site.physical_directory:
                dirs.append((site.physical_directory, site.line, f"Site '{site.name}'"))
            dirs += [
                (v.physical_directory, v.line, f"VirtualApplication '{v.name}'")
                for v in site.virtual_applications
            ]
            dirs += [
                (d.physical_directory, d.line, f"VirtualDirectory '{d.name}'")
                for d in site.virtual_directories
            ]
        dirs += [(c.source_directory, c.line, "Content") for c in role.contents]
        for rel, line, what in dirs:
            if ".." in rel.replace("\\", "/").split("/"):
                continue  # reported by validate
            if not (root / _norm(rel)).is_dir():
                out.append(
                    Problem(
                        definition_file,
                        line,
                        f"{what} of role '{role.name}' refers to directory '{rel}', which does "
                        "not exist in the service directory.",
                    )
                )
    return out
