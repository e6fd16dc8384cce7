"""``InstanceSpec``: everything a host needs to run one role instance, as JSON-ready data.

The controller builds one spec per instance (``spec_from_model`` once the model is in) and sends
lists of them to a host agent (``PUT /v1/instances``, see ``cumulo.host.api``). A spec is a frozen
dataclass of plain values: ``to_json()``/``from_json()`` round-trip exactly, and two equal specs
mean "nothing to do". A spec that differs only in ``settings`` is applied in place (the role's
``changing`` handlers may cancel it, which recycles the instance); any other difference recycles
the instance with a fresh approot.

The instance is keyed by ``key`` = ``<deployment_id>/<instance_id>`` (instance ids such as
``WebRole1_IN_0`` repeat across the two slots' deployments).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

RoleKind = Literal["web", "worker"]
ExecutionContext = Literal["limited", "elevated"]
TaskType = Literal["simple", "background", "foreground"]
EndpointKind = Literal["input", "internal", "instance_input"]
SiteKind = Literal["wsgi", "asgi"]
ProbeProtocol = Literal["http", "tcp"]

ANY_PORT = "*"


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of the role as this instance sees it."""

    name: str
    kind: EndpointKind
    protocol: str
    """http, https, tcp, udp or any."""
    port: int | None = None
    """The public port on the VIP (input endpoints) or the declared port (internal)."""
    local_port: int | Literal["*"] | None = None
    """Local port at the instance address: fixed, ``"*"`` (host picks), None (= port)."""
    probe: str | None = None
    """Name of the custom LoadBalancerProbe of this endpoint, if any."""
    ignore_role_instance_status: bool = False
    certificate: str | None = None
    """https input endpoints: the name of the role's certificate (``CertificateSpec.name``) a
    hosted site serves TLS with on this endpoint."""

    def wanted_local_port(self) -> int | None:
        """The fixed local port, or None when the host is to pick one."""
        if self.local_port == ANY_PORT:
            return None
        if isinstance(self.local_port, int):
            return self.local_port
        return self.port


@dataclass(frozen=True)
class LocalResourceSpec:
    name: str
    size_mb: int = 100
    clean_on_role_recycle: bool = True


@dataclass(frozen=True)
class EnvVarSpec:
    """An environment variable: a literal ``value`` or a RoleInstanceValue ``xpath``."""

    name: str
    value: str | None = None
    xpath: str | None = None


@dataclass(frozen=True)
class StartupTaskSpec:
    command_line: str
    execution_context: ExecutionContext = "limited"
    task_type: TaskType = "simple"
    environment: tuple[EnvVarSpec, ...] = ()


@dataclass(frozen=True)
class ProgramEntryPointSpec:
    command_line: str
    """Relative to approot; ``python`` as first word means the role interpreter."""
    set_ready_on_process_start: bool = True


@dataclass(frozen=True)
class SiteAppSpec:
    """A VirtualApplication of a Site: its own WSGI or ASGI app, which receives the requests
    under ``path`` (with ``SCRIPT_NAME`` / ``root_path`` = that prefix)."""

    path: str
    """The URL path it is mounted at: ``/api``, ``/api/v2`` (no trailing slash)."""
    kind: SiteKind
    app: str
    """``module:attribute``, importable from physical_directory."""
    physical_directory: str = ""
    """Relative to approot; empty = approot itself."""


@dataclass(frozen=True)
class VirtualDirectorySpec:
    """A VirtualDirectory: the static files of a folder, served by the platform at ``path``."""

    path: str
    """The URL path: ``/static``, ``/api/docs`` (no trailing slash)."""
    physical_directory: str = ""
    """Relative to approot; empty = approot itself."""


@dataclass(frozen=True)
class SiteSpec:
    """A web role's Site, hosted by the platform's HTTP server: the root app (``kind``, ``app``,
    ``physical_directory``), its VirtualApplications (``apps``) and VirtualDirectories
    (``directories``). A request goes to the mount with the longest path that prefixes it (by
    whole segments, ASCII letters in any case, as IIS matches); the root app takes the rest."""

    name: str
    kind: SiteKind
    app: str
    """``module:attribute`` of the WSGI or ASGI application, importable from physical_directory."""
    physical_directory: str = ""
    """Relative to approot; empty = approot itself."""
    bindings: tuple[str, ...] = ()
    """Names of the http endpoints the site is bound to (empty = every http input endpoint)."""
    apps: tuple[SiteAppSpec, ...] = ()
    """The VirtualApplications, nested ones included (``/api`` and ``/api/v2``)."""
    directories: tuple[VirtualDirectorySpec, ...] = ()
    """The VirtualDirectories of the site and of its VirtualApplications, by full URL path."""

    def mounts(self, approot: str) -> list[dict[str, str]]:
        """What the site's server mounts besides the root app, for ``CUMULO_SITE_MOUNTS``:
        ``{"path", "kind" (wsgi, asgi or static), "dir" (absolute), "app" (apps only)}``."""
        out = [
            {
                "path": a.path,
                "kind": a.kind,
                "app": a.app,
                "dir": _join(approot, a.physical_directory),
            }
            for a in self.apps
        ]
        out += [
            {"path": d.path, "kind": "static", "dir": _join(approot, d.physical_directory)}
            for d in self.directories
        ]
        return out


def _join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}" if relative else root


@dataclass(frozen=True)
class ProbeSpec:
    """A custom LoadBalancerProbe."""

    name: str
    protocol: ProbeProtocol
    port: int | None = None
    """The local port to probe; None = the local port of the endpoint that names this probe."""
    path: str | None = None
    interval_s: float = 15.0
    timeout_s: float = 31.0


@dataclass(frozen=True)
class CertificateSpec:
    """A certificate of the role (``Certificates/Certificate`` in the .csdef, thumbprint from the
    .cscfg) with its PEM: the certificate, then its private key when the store has one. The
    host writes it into the instance (see docs/roles.md, "Certificates")."""

    name: str
    thumbprint: str
    pem: str
    store_location: str = "LocalMachine"
    store_name: str = "My"
    permission_level: str = "limitedOrElevated"
    """``elevated``: only elevated processes may read the private key."""


@dataclass(frozen=True)
class LimitsSpec:
    """Resources of the role's vmsize."""

    vmsize: str = "Small"
    cores: float = 1.0
    memory_mb: int = 1792


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a host needs to run one role instance."""

    deployment_id: str
    service: str
    slot: str
    role: str
    role_kind: RoleKind
    instance_id: str
    approot_source: str
    """Directory on the host with the role's files (an extracted package); copied per instance."""
    update_domain: int = 0
    fault_domain: int = 0
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    endpoints: tuple[EndpointSpec, ...] = ()
    local_resources: tuple[LocalResourceSpec, ...] = ()
    environment: tuple[EnvVarSpec, ...] = ()
    startup_tasks: tuple[StartupTaskSpec, ...] = ()
    entry_point: ProgramEntryPointSpec | None = None
    site: SiteSpec | None = None
    execution_context: ExecutionContext = "limited"
    settings: tuple[tuple[str, str], ...] = ()
    """Configuration settings (name, value) from the .cscfg, sorted by name."""
    stop_grace_s: float = 30.0
    probes: tuple[ProbeSpec, ...] = ()
    emulated: bool = False
    role_env: str | None = None
    """Path of the role's dependency environment (issue 8), when it has one."""
    certificates: tuple[CertificateSpec, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.deployment_id}/{self.instance_id}"

    def settings_dict(self) -> dict[str, str]:
        return dict(self.settings)

    def same_except_settings(self, other: InstanceSpec) -> bool:
        return dataclasses.replace(self, settings=()) == dataclasses.replace(other, settings=())

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: Any) -> InstanceSpec:
        """Build a spec from parsed JSON; raises ValueError naming the bad field."""
        spec: InstanceSpec = _from_json(cls, data, "spec")
        return spec

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


T = TypeVar("T")


def _from_json(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin is Literal:
        if data not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ValueError(f"{where} is {data!r}; expected one of {choices}.")
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_json(arg, data, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where} has bad value {data!r}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list | tuple):
            raise ValueError(f"{where} must be a list, not {data!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise ValueError(f"{where} must have {len(args)} items, not {len(data)}.")
        return tuple(
            _from_json(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, data, strict=True))
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object, not {data!r}.")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where} has unknown field {unknown[0]!r}.")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _from_json(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where} lacks the required field {f.name!r}.")
        return tp(**kwargs)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise ValueError(f"{where} must be a number, not {data!r}.")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"{where} must be {tp.__name__}, not {data!r}.")
        return data
    raise ValueError(f"{where}: unsupported type {tp!r}.")
