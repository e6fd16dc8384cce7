"""The service definition (``ServiceDefinition.csdef``) as typed, immutable dataclasses.

Names follow Azure's schema (``schema-csdef-file``, ``-webrole``, ``-workerrole``,
``-loadbalancerprobe``, ``-networktrafficrules``) in snake_case. Every element keeps the line it
was read from in ``line`` (excluded from equality, so two models read from differently formatted
files compare equal). Defaults are Azure's: a value the file leaves out is filled in here, so
consumers never apply defaults themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CSDEF_NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
"""Azure's XML namespace for ``.csdef`` files."""

CUMULO_NAMESPACE = "http://cumulo.dev/schemas/2026/service-model"
"""cumulo's own XML namespace for extensions (documented in docs/service-model.md)."""


def _line() -> int | None:
    return field(default=None, compare=False, repr=False)


class RoleKind(StrEnum):
    """A ``WebRole`` (hosts Sites) or a ``WorkerRole`` (runs a program)."""

    WEB = "WebRole"
    WORKER = "WorkerRole"


class EndpointProtocol(StrEnum):
    """Protocols of endpoints; ``any`` only for internal endpoints."""

    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    UDP = "udp"
    ANY = "any"


class ProbeProtocol(StrEnum):
    """``http`` probes need a 200 from ``path``; ``tcp`` probes need an accepted connection."""

    HTTP = "http"
    TCP = "tcp"


class ExecutionContext(StrEnum):
    """``limited`` runs as an unprivileged user, ``elevated`` as the agent's user."""

    LIMITED = "limited"
    ELEVATED = "elevated"


class TaskType(StrEnum):
    """Startup task kinds: ``simple`` is waited for; the other two run alongside the role."""

    SIMPLE = "simple"
    BACKGROUND = "background"
    FOREGROUND = "foreground"


class AppInterface(StrEnum):
    """How a Python web site's app is called."""

    WSGI = "wsgi"
    ASGI = "asgi"


@dataclass(frozen=True)
class PortRange:
    """An inclusive range of ports, ``FixedPortRange min= max=``."""

    min: int
    max: int
    line: int | None = _line()


@dataclass(frozen=True)
class InputEndpoint:
    """A public, load-balanced endpoint on the slot's VIP.

    ``local_port`` is the port the instance listens on: equal to ``port`` when the file omits it,
    and ``None`` for ``localPort="*"`` (the host picks one; role code discovers it).
    ``idle_timeout_minutes`` is the LB's TCP idle timeout (4-30, default 4).
    """

    name: str
    protocol: EndpointProtocol
    port: int
    local_port: int | None
    certificate: str | None = None
    ignore_role_instance_status: bool = False
    load_balancer_probe: str | None = None
    load_balancer: str | None = None
    idle_timeout_minutes: int = 4
    load_balancer_distribution: str | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class InternalEndpoint:
    """A role-to-role endpoint, reachable only inside the deployment.

    ``port`` is the attribute form; ``fixed_port`` / ``fixed_port_range`` the child forms. With
    none of them the host assigns a port.
    """

    name: str
    protocol: EndpointProtocol
    port: int | None = None
    fixed_port: int | None = None
    fixed_port_range: PortRange | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class InstanceInputEndpoint:
    """One public port per instance, taken from ``public_ports`` and forwarded to ``local_port``."""

    name: str
    protocol: EndpointProtocol
    local_port: int
    public_ports: PortRange
    line: int | None = _line()


@dataclass(frozen=True)
class SettingDeclaration:
    """``ConfigurationSettings/Setting name=``: declared here, valued in the ``.cscfg``."""

    name: str
    line: int | None = _line()


@dataclass(frozen=True)
class CertificateDeclaration:
    """``Certificates/Certificate``: where a certificate goes; its thumbprint is in the cscfg."""

    name: str
    store_location: str = "LocalMachine"
    store_name: str = "My"
    permission_level: str = "limitedOrElevated"
    line: int | None = _line()


@dataclass(frozen=True)
class Import:
    """``Imports/Import moduleName=``: Diagnostics, RemoteAccess or RemoteForwarder (recorded)."""

    module_name: str
    line: int | None = _line()


@dataclass(frozen=True)
class LocalStorage:
    """A per-instance directory with a size quota, kept or wiped on recycle."""

    name: str
    size_mb: int = 100
    clean_on_role_recycle: bool = True
    line: int | None = _line()


@dataclass(frozen=True)
class EnvironmentVariable:
    """``Environment/Variable``: exactly one of ``value`` (literal) or ``xpath`` (resolved per
    instance from ``RoleInstanceValue``, see ``cumulo.model.xpaths``) is set."""

    name: str
    value: str | None = None
    xpath: str | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class StartupTask:
    """``Startup/Task``: run in document order before the role starts, on every (re)start."""

    command_line: str
    execution_context: ExecutionContext = ExecutionContext.LIMITED
    task_type: TaskType = TaskType.SIMPLE
    environment: tuple[EnvironmentVariable, ...] = ()
    line: int | None = _line()


@dataclass(frozen=True)
class ProgramEntryPoint:
    """Runs ``command_line`` (relative to the approot); if it exits the instance recycles."""

    command_line: str
    set_ready_on_process_start: bool = True
    line: int | None = _line()


@dataclass(frozen=True)
class NetFxEntryPoint:
    """A .NET entry point: parsed and recorded; cumulo refuses it at deploy time."""

    assembly_name: str
    target_framework_version: str
    line: int | None = _line()


EntryPoint = ProgramEntryPoint | NetFxEntryPoint


@dataclass(frozen=True)
class Runtime:
    """``Runtime``: the role process's user, environment and entry point."""

    execution_context: ExecutionContext = ExecutionContext.LIMITED
    environment: tuple[EnvironmentVariable, ...] = ()
    entry_point: EntryPoint | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class Binding:
    """``Site/Bindings/Binding``: a site listens on the named input endpoint."""

    name: str
    endpoint_name: str
    host_header: str | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class VirtualDirectory:
    """``VirtualDirectory``: a URL path served from another directory (static files)."""

    name: str
    physical_directory: str
    line: int | None = _line()


@dataclass(frozen=True)
class VirtualApplication:
    """``VirtualApplication``: a separate app mounted under ``/name`` of its site."""

    name: str
    physical_directory: str
    virtual_directories: tuple[VirtualDirectory, ...] = ()
    app: SiteAppDeclaration | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class SiteAppDeclaration:
    """cumulo extension on a Site or VirtualApplication naming its Python app explicitly:
    ``cumulo:wsgiApp="module:callable"`` or ``cumulo:asgiApp="module:callable"``. Without it the
    app comes from ``web.config`` appSettings ``WSGI_HANDLER`` (see ``cumulo.model.webapp``)."""

    interface: AppInterface
    handler: str
    line: int | None = _line()


@dataclass(frozen=True)
class Site:
    """``Sites/Site``: a web site hosted by the platform.

    ``physical_directory`` is relative to the service directory (None: the role's own folder).
    """

    name: str
    physical_directory: str | None = None
    bindings: tuple[Binding, ...] = ()
    virtual_applications: tuple[VirtualApplication, ...] = ()
    virtual_directories: tuple[VirtualDirectory, ...] = ()
    app: SiteAppDeclaration | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class Content:
    """``Contents/Content``: copy ``source_directory`` to ``destination`` under the approot."""

    destination: str
    source_directory: str
    line: int | None = _line()


@dataclass(frozen=True)
class Role:
    """A ``WebRole`` or ``WorkerRole`` and everything it declares."""

    name: str
    kind: RoleKind
    vmsize: str = "Small"
    enable_native_code_execution: bool = True
    settings: tuple[SettingDeclaration, ...] = ()
    certificates: tuple[CertificateDeclaration, ...] = ()
    imports: tuple[Import, ...] = ()
    input_endpoints: tuple[InputEndpoint, ...] = ()
    internal_endpoints: tuple[InternalEndpoint, ...] = ()
    instance_input_endpoints: tuple[InstanceInputEndpoint, ...] = ()
    local_storage: tuple[LocalStorage, ...] = ()
    startup_tasks: tuple[StartupTask, ...] = ()
    runtime: Runtime | None = None
    sites: tuple[Site, ...] = ()
    contents: tuple[Content, ...] = ()
    line: int | None = _line()

    @property
    def setting_names(self) -> tuple[str, ...]:
        """The declared setting names, in file order."""
        return tuple(s.name for s in self.settings)

    def input_endpoint(self, name: str) -> InputEndpoint | None:
        """The input endpoint called ``name``, if any."""
        return next((e for e in self.input_endpoints if e.name == name), None)


@dataclass(frozen=True)
class LoadBalancerProbe:
    """A custom health probe; replaces the default "agent says Ready" probe for its endpoints.

    ``port`` None means the endpoint's own port. Times are seconds (defaults 15 and 31).
    """

    name: str
    protocol: ProbeProtocol
    path: str | None = None
    port: int | None = None
    interval_seconds: int = 15
    timeout_seconds: int = 31
    line: int | None = _line()


@dataclass(frozen=True)
class RoleEndpointRef:
    """``Destinations/RoleEndpoint``: an internal endpoint of a role."""

    role_name: str
    endpoint_name: str
    line: int | None = _line()


@dataclass(frozen=True)
class TrafficRule:
    """``NetworkTrafficRules/OnlyAllowTrafficTo``: who may reach some internal endpoints.

    ``from_roles`` empty with ``allow_all`` True means ``AllowAllTraffic``.
    """

    destinations: tuple[RoleEndpointRef, ...]
    allow_all: bool = False
    from_roles: tuple[str, ...] = ()
    line: int | None = _line()


@dataclass(frozen=True)
class ServiceDefinition:
    """The whole ``.csdef``: name, upgrade domains, probes, traffic rules and 1-25 roles."""

    name: str
    roles: tuple[Role, ...]
    upgrade_domain_count: int = 5
    topology_change_discovery: str | None = None
    schema_version: str | None = None
    load_balancer_probes: tuple[LoadBalancerProbe, ...] = ()
    network_traffic_rules: tuple[TrafficRule, ...] = ()
    line: int | None = _line()

    def role(self, name: str) -> Role | None:
        """The role called ``name``, if any."""
        return next((r for r in self.roles if r.name == name), None)

    def probe(self, name: str) -> LoadBalancerProbe | None:
        """The probe called ``name``, if any."""
        return next((p for p in self.load_balancer_probes if p.name == name), None)

    @property
    def role_names(self) -> tuple[str, ...]:
        """Role names in file order."""
        return tuple(r.name for r in self.roles)
