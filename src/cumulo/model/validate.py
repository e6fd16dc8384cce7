"""Semantic and cross-file validation: every problem at once, each one sentence with file:line.

``validate(definition, configuration)`` checks ranges, references and Azure's limits and returns
a sorted list of ``Problem``; an empty list means the service is valid. ``deploy_blockers`` lists
what is valid Azure input but cannot run on cumulo (a .NET entry point, a worker role with no
program), which the controller refuses at deploy time and ``cumulo validate`` shows as warnings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from cumulo.errors import Problem
from cumulo.model._reader import did_you_mean
from cumulo.model.configuration import RoleConfiguration, ServiceConfiguration
from cumulo.model.definition import (
    EndpointProtocol,
    ExecutionContext,
    LoadBalancerProbe,
    NetFxEntryPoint,
    PortRange,
    ProbeProtocol,
    ProgramEntryPoint,
    Role,
    RoleKind,
    ServiceDefinition,
    Site,
)
from cumulo.model.vmsizes import VM_SIZES, vm_size
from cumulo.model.xpaths import SUPPORTED_FORMS, XPathKind, parse_xpath


@dataclass(frozen=True)
class Limits:
    """Azure's per-deployment limits (reference §0, LIM). ``None`` means unlimited.

    Override: ``cumulo validate --skip-limits`` or the environment variable
    ``CUMULO_SKIP_LIMIT_VALIDATION=1`` (Azure's emulator had ``_CSRUN_SKIP_LIMIT_VALIDATION``,
    which cumulo honours too) select ``NO_LIMITS``.
    """

    max_roles: int | None = 25
    max_input_endpoints: int | None = 25
    max_internal_endpoints: int | None = 25
    max_instance_input_endpoints: int | None = 25
    max_instances: int | None = 50


AZURE_LIMITS = Limits()
NO_LIMITS = Limits(None, None, None, None, None)

_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def _port_ok(port: int) -> bool:
    return 1 <= port <= 65535


class _Checker:
    def __init__(self, csdef: str, cscfg: str) -> None:
        self.csdef = csdef
        self.cscfg = cscfg
        self.problems: list[Problem] = []

    def d(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.csdef, line, message))

    def c(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.cscfg, line, message))


def _duplicates(names: Iterable[str]) -> set[str]:
    return {n for n, k in Counter(names).items() if k > 1}


def validate(
    definition: ServiceDefinition,
    configuration: ServiceConfiguration | None = None,
    *,
    definition_file: str = "ServiceDefinition.csdef",
    configuration_file: str = "ServiceConfiguration.cscfg",
    limits: Limits = AZURE_LIMITS,
) -> list[Problem]:
    """Every problem of ``definition`` (and of ``configuration`` against it), sorted by place."""
    ck = _Checker(definition_file, configuration_file)
    _check_definition(ck, definition, limits)
    if configuration is not None:
        _check_configuration(ck, definition, configuration, limits)
    order = {definition_file: 0, configuration_file: 1}
    return sorted(ck.problems, key=lambda p: (order.get(p.file, 2), p.file, p.line or 0))


def _check_definition(ck: _Checker, sd: ServiceDefinition, limits: Limits) -> None:
    if not 1 <= sd.upgrade_domain_count <= 20:
        ck.d(
            sd.line,
            f"ServiceDefinition '{sd.name}' has upgradeDomainCount "
            f"{sd.upgrade_domain_count}; it must be 1-20.",
        )
    if not sd.roles:
        ck.d(
            sd.line,
            f"ServiceDefinition '{sd.name}' defines no role; add a <WebRole> or <WorkerRole>.",
        )
    if limits.max_roles is not None and len(sd.roles) > limits.max_roles:
        ck.d(
            sd.line,
            f"ServiceDefinition '{sd.name}' defines {len(sd.roles)} roles; Azure "
            f"allows at most {limits.max_roles} (see --skip-limits).",
        )
    for name in sorted(_duplicates(r.name for r in sd.roles)):
        later = [r for r in sd.roles if r.name == name][1:]
        for r in later:
            ck.d(r.line, f"{r.kind.value} '{name}' is defined twice; role names must be unique.")
    # probes
    for name in sorted(_duplicates(p.name for p in sd.load_balancer_probes)):
        p = [x for x in sd.load_balancer_probes if x.name == name][-1]
        ck.d(p.line, f"LoadBalancerProbe '{name}' is defined twice; probe names must be unique.")
    for p in sd.load_balancer_probes:
        w = f"LoadBalancerProbe '{p.name}'"
        if p.protocol is ProbeProtocol.HTTP and not p.path:
            ck.d(p.line, f'{w} is an http probe without a path; add path="/health" or similar.')
        if p.protocol is ProbeProtocol.TCP and p.path is not None:
            ck.d(p.line, f"{w} is a tcp probe with path '{p.path}'; tcp probes take no path.")
        if p.port is not None and not _port_ok(p.port):
            ck.d(p.line, f"{w} has port {p.port}; ports are 1-65535.")
        if p.interval_seconds < 5:
            ck.d(p.line, f"{w} has intervalInSeconds {p.interval_seconds}; the minimum is 5.")
        if p.timeout_seconds < 11:
            ck.d(p.line, f"{w} has timeoutInSeconds {p.timeout_seconds}; the minimum is 11.")
    # roles
    input_ports: dict[int, str] = {}
    n_input = n_internal = n_instance_input = 0
    probe_names = [p.name for p in sd.load_balancer_probes]
    probes = {p.name: p for p in sd.load_balancer_probes}
    for role in sd.roles:
        _check_role(ck, role, probe_names)
        _check_tls_site(ck, role, probes)
        n_input += len(role.input_endpoints)
        n_internal += len(role.internal_endpoints)
        n_instance_input += len(role.instance_input_endpoints)
        for ep in role.input_endpoints:
            owner = input_ports.get(ep.port)
            if owner is not None:
                ck.d(
                    ep.line,
                    f"InputEndpoint '{ep.name}' of role '{role.name}' uses port "
                    f"{ep.port}, already used by {owner}; input ports must be unique "
                    "across roles.",
                )
            else:
                input_ports[ep.port] = f"InputEndpoint '{ep.name}' of role '{role.name}'"
    for role in sd.roles:
        for ie in role.instance_input_endpoints:
            pr = ie.public_ports
            clash = sorted(p for p in input_ports if pr.min <= p <= pr.max)
            if clash:
                ck.d(
                    ie.line,
                    f"InstanceInputEndpoint '{ie.name}' of role '{role.name}' has public "
                    f"ports {pr.min}-{pr.max}, which include input port {clash[0]}.",
                )
    for count, limit, kind in (
        (n_input, limits.max_input_endpoints, "input endpoints"),
        (n_internal, limits.max_internal_endpoints, "internal endpoints"),
        (n_instance_input, limits.max_instance_input_endpoints, "instance input endpoints"),
    ):
        if limit is not None and count > limit:
            ck.d(
                sd.line,
                f"ServiceDefinition '{sd.name}' has {count} {kind}; Azure allows at "
                f"most {limit} per deployment (see --skip-limits).",
            )
    # network traffic rules
    for rule in sd.network_traffic_rules:
        for dest in rule.destinations:
            target = sd.role(dest.role_name)
            if target is None:
                ck.d(
                    dest.line,
                    f"RoleEndpoint names role '{dest.role_name}', which is not "
                    "defined;"
                    + (
                        did_you_mean(dest.role_name, sd.role_names) or " define it or fix the name."
                    ),
                )
            elif dest.endpoint_name not in [e.name for e in target.internal_endpoints]:
                ck.d(
                    dest.line,
                    f"RoleEndpoint names '{dest.endpoint_name}', which is not an "
                    f"InternalEndpoint of role '{dest.role_name}'.",
                )
        for source in rule.from_roles:
            if sd.role(source) is None:
                ck.d(rule.line, f"FromRole names role '{source}', which is not defined.")


def _range_problems(rng: PortRange, what: str) -> list[str]:
    out = []
    if not (_port_ok(rng.min) and _port_ok(rng.max)):
        out.append(f"{what} is {rng.min}-{rng.max}; ports are 1-65535.")
    elif rng.min > rng.max:
        out.append(f"{what} has min {rng.min} greater than max {rng.max}.")
    return out


def site_endpoints(role: Role) -> list[str]:
    """Names of the input endpoints a hosted site of ``role`` listens on: those its Sites'
    Bindings name, or every http and https input endpoint when no Site has a binding."""
    if not role.sites:
        return []
    bound = {b.endpoint_name for site in role.sites for b in site.bindings}
    return [
        e.name
        for e in role.input_endpoints
        if e.name in bound
        or (not bound and e.protocol in (EndpointProtocol.HTTP, EndpointProtocol.HTTPS))
    ]


def _check_tls_site(ck: _Checker, role: Role, probes: dict[str, LoadBalancerProbe]) -> None:
    """A hosted site serves TLS on its https endpoints with the endpoint's certificate: the
    site's process must be able to read the private key, and an http probe must not be sent in
    plain text to the TLS port."""
    served = set(site_endpoints(role))
    limited = role.runtime is None or role.runtime.execution_context is ExecutionContext.LIMITED
    declared = {c.name: c for c in role.certificates}
    for ep in role.input_endpoints:
        if ep.name not in served or ep.protocol is not EndpointProtocol.HTTPS:
            continue
        w = f"InputEndpoint '{ep.name}' of role '{role.name}'"
        cert = declared.get(ep.certificate or "")
        if cert is not None and cert.permission_level == "elevated" and limited:
            ck.d(
                ep.line,
                f"{w} is https, served by the role's site with certificate '{cert.name}', "
                "whose permissionLevel is 'elevated': the site runs limited and could not read "
                'the private key; drop permissionLevel="elevated" from the certificate or run '
                'the role with <Runtime executionContext="elevated">.',
            )
        probe = probes.get(ep.load_balancer_probe or "")
        if probe is not None and probe.protocol is ProbeProtocol.HTTP and probe.port is None:
            ck.d(
                ep.line,
                f"{w} is https (the site serves TLS on it), but its loadBalancerProbe "
                f"'{probe.name}' is an http probe without a port, which would send plain HTTP "
                'to the TLS port; use protocol="tcp", or give the probe port="..." of a fixed '
                "localPort of an http endpoint of the site.",
            )


def _check_role(ck: _Checker, role: Role, probe_names: list[str]) -> None:
    of = f"of role '{role.name}'"
    size = vm_size(role.vmsize)
    if size is None:
        hint = did_you_mean(role.vmsize, VM_SIZES)
        ck.d(
            role.line,
            f"{role.kind.value} '{role.name}' has vmsize '{role.vmsize}', which is "
            "not a known size;" + (hint or " see docs/service-model.md."),
        )
    for name in sorted(_duplicates(role.setting_names)):
        s = [x for x in role.settings if x.name == name][-1]
        ck.d(s.line, f"Setting '{name}' {of} is declared twice.")
    cert_names = [c.name for c in role.certificates]
    for name in sorted(_duplicates(cert_names)):
        c = [x for x in role.certificates if x.name == name][-1]
        ck.d(c.line, f"Certificate '{name}' {of} is declared twice.")
    endpoints = [
        *((e.name, e.line) for e in role.input_endpoints),
        *((e.name, e.line) for e in role.internal_endpoints),
        *((e.name, e.line) for e in role.instance_input_endpoints),
    ]
    for name in sorted(_duplicates(n for n, _ in endpoints)):
        line = [ln for n, ln in endpoints if n == name][-1]
        ck.d(
            line,
            f"Endpoint '{name}' {of} is declared twice; endpoint names must be unique "
            "within a role.",
        )
    for ep in role.input_endpoints:
        w = f"InputEndpoint '{ep.name}' {of}"
        if not _port_ok(ep.port):
            ck.d(ep.line, f"{w} has port {ep.port}; ports are 1-65535.")
        if ep.local_port not in (None, ep.port) and not _port_ok(ep.local_port):
            ck.d(ep.line, f"{w} has localPort {ep.local_port}; ports are 1-65535 or '*'.")
        if ep.protocol is EndpointProtocol.HTTPS and not ep.certificate:
            ck.d(
                ep.line,
                f'{w} is https but names no certificate; add certificate="..." '
                "naming a <Certificate> of the role.",
            )
        if ep.certificate and ep.protocol is not EndpointProtocol.HTTPS:
            ck.d(
                ep.line,
                f"{w} names certificate '{ep.certificate}' but its protocol is "
                f"'{ep.protocol.value}'; only https endpoints take a certificate.",
            )
        elif ep.certificate and ep.certificate not in cert_names:
            ck.d(
                ep.line,
                f"{w} names certificate '{ep.certificate}', which the role does not "
                "declare in <Certificates>;"
                + (did_you_mean(ep.certificate, cert_names) or " declare it there."),
            )
        if ep.load_balancer_probe is not None and ep.load_balancer_probe not in probe_names:
            ck.d(
                ep.line,
                f"{w} names loadBalancerProbe '{ep.load_balancer_probe}', which is not "
                "defined in <LoadBalancerProbes>;"
                + (did_you_mean(ep.load_balancer_probe, probe_names) or " define it."),
            )
        if not 4 <= ep.idle_timeout_minutes <= 30:
            ck.d(
                ep.line, f"{w} has idleTimeoutInMinutes {ep.idle_timeout_minutes}; it must be 4-30."
            )
    internal = role.internal_endpoints
    if role.kind is RoleKind.WORKER and len(internal) > 5:
        ck.d(
            role.line,
            f"WorkerRole '{role.name}' has {len(internal)} internal endpoints; Azure "
            "allows at most 5 per worker role.",
        )
    if role.kind is RoleKind.WEB and not role.sites and len(internal) > 1:
        ck.d(
            role.line,
            f"WebRole '{role.name}' has no <Sites> and {len(internal)} internal "
            "endpoints; Azure allows at most 1 there.",
        )
    for it in internal:
        w = f"InternalEndpoint '{it.name}' {of}"
        if it.port is not None and not _port_ok(it.port):
            ck.d(it.line, f"{w} has port {it.port}; ports are 1-65535.")
        if it.fixed_port is not None and not _port_ok(it.fixed_port):
            ck.d(it.line, f"{w} has FixedPort {it.fixed_port}; ports are 1-65535.")
        if it.fixed_port_range is not None:
            for msg in _range_problems(it.fixed_port_range, f"FixedPortRange of {w}"):
                ck.d(it.fixed_port_range.line or it.line, msg)
    for ie in role.instance_input_endpoints:
        w = f"InstanceInputEndpoint '{ie.name}' {of}"
        if not _port_ok(ie.local_port):
            ck.d(ie.line, f"{w} has localPort {ie.local_port}; ports are 1-65535.")
        for msg in _range_problems(ie.public_ports, f"FixedPortRange of {w}"):
            ck.d(ie.public_ports.line or ie.line, msg)
    for name in sorted(_duplicates(ls.name for ls in role.local_storage)):
        ls = [x for x in role.local_storage if x.name == name][-1]
        ck.d(ls.line, f"LocalStorage '{name}' {of} is declared twice.")
    total = 0
    for ls in role.local_storage:
        total += max(ls.size_mb, 0)
        if ls.size_mb < 1:
            ck.d(
                ls.line,
                f"LocalStorage '{ls.name}' {of} has sizeInMB {ls.size_mb}; the minimum is 1.",
            )
    if size is not None and total > size.disk_mb:
        line = role.local_storage[-1].line if role.local_storage else role.line
        ck.d(
            line,
            f"Local storage {of} totals {total} MB, more than the {size.disk_mb} MB of "
            f"local disk of vmsize '{size.name}'.",
        )
    # environments and xpaths
    envs = [
        (f"Startup Task {i} {of}", t.environment) for i, t in enumerate(role.startup_tasks, start=1)
    ]
    if role.runtime is not None:
        envs.append((f"Runtime {of}", role.runtime.environment))
    settings = set(role.setting_names)
    storage = {ls.name for ls in role.local_storage}
    eps = (
        {e.name for e in role.input_endpoints}
        | {e.name for e in role.internal_endpoints}
        | {e.name for e in role.instance_input_endpoints}
    )
    for where, env in envs:
        for name in sorted(_duplicates(v.name for v in env)):
            v = [x for x in env if x.name == name][-1]
            ck.d(v.line, f"Variable '{name}' of {where} is set twice.")
        for v in env:
            if v.xpath is None:
                continue
            ref = parse_xpath(v.xpath)
            vw = f"Variable '{v.name}' of {where}"
            if ref is None:
                hint = did_you_mean(v.xpath, SUPPORTED_FORMS, cutoff=0.9)
                ck.d(
                    v.line,
                    f"{vw} uses RoleInstanceValue xpath '{v.xpath}', which is not a supported "
                    "form;"
                    + (hint or " see docs/service-model.md for the forms Azure and cumulo accept."),
                )
            elif ref.kind is XPathKind.SETTING and ref.name not in settings:
                ck.d(v.line, f"{vw} reads setting '{ref.name}', which the role does not declare.")
            elif ref.kind is XPathKind.LOCAL_RESOURCE and ref.name not in storage:
                ck.d(
                    v.line,
                    f"{vw} reads local resource '{ref.name}', which the role does not declare.",
                )
            elif ref.kind is XPathKind.ENDPOINT and ref.name not in eps:
                ck.d(v.line, f"{vw} reads endpoint '{ref.name}', which the role does not declare.")
    if role.runtime is not None and isinstance(role.runtime.entry_point, ProgramEntryPoint):
        pe = role.runtime.entry_point
        if not pe.set_ready_on_process_start:
            ck.d(
                pe.line,
                f"ProgramEntryPoint {of} has setReadyOnProcessStart 'false'; Azure "
                "requires 'true'.",
            )
    # sites
    for name in sorted(_duplicates(s.name for s in role.sites)):
        dup_site = [x for x in role.sites if x.name == name][-1]
        ck.d(dup_site.line, f"Site '{name}' {of} is defined twice.")
    http_eps = {e.name: e for e in role.input_endpoints}
    for site in role.sites:
        for b in site.bindings:
            target = http_eps.get(b.endpoint_name)
            bw = f"Binding '{b.name}' of Site '{site.name}' {of}"
            if target is None:
                ck.d(
                    b.line,
                    f"{bw} names endpoint '{b.endpoint_name}', which is not an "
                    "InputEndpoint of the role;"
                    + (did_you_mean(b.endpoint_name, http_eps) or " declare it."),
                )
            elif target.protocol not in (EndpointProtocol.HTTP, EndpointProtocol.HTTPS):
                ck.d(
                    b.line,
                    f"{bw} names endpoint '{b.endpoint_name}', whose protocol is "
                    f"'{target.protocol.value}'; sites bind http or https endpoints.",
                )
        for name in sorted(_duplicates(v.name for v in site.virtual_applications)):
            ck.d(site.line, f"Site '{site.name}' {of} has two VirtualApplications '{name}'.")
        _check_site_paths(ck, site, of)
        paths = [(site.physical_directory, site.line, f"Site '{site.name}' {of}")]
        paths += [
            (
                v.physical_directory,
                v.line,
                f"VirtualApplication '{v.name}' of Site '{site.name}' {of}",
            )
            for v in site.virtual_applications
        ]
        paths += [
            (
                d.physical_directory,
                d.line,
                f"VirtualDirectory '{d.name}' of Site '{site.name}' {of}",
            )
            for d in site.virtual_directories
        ]
        paths += [
            (
                d.physical_directory,
                d.line,
                f"VirtualDirectory '{d.name}' of VirtualApplication '{v.name}' of Site "
                f"'{site.name}' {of}",
            )
            for v in site.virtual_applications
            for d in v.virtual_directories
        ]
        for path, line, w in paths:
            if path is not None:
                why = relative_path_problem(path)
                if why:
                    ck.d(line, f"{w} has physicalDirectory '{path}'; {why}")
    for content in role.contents:
        for attr, path in (
            ("destination", content.destination),
            ("SourceDirectory path", content.source_directory),
        ):
            why = relative_path_problem(path, allow_empty=attr == "destination")
            if why:
                ck.d(content.line, f"Content {of} has {attr} '{path}'; {why}")


_URL_SEGMENT_BAD = re.compile(r"[?#%\x00-\x1f\x7f]")


def url_path_problem(name: str) -> str | None:
    """Why ``name`` (of a VirtualApplication or VirtualDirectory) is not a URL path under its
    site (None if it is). Backslashes count as ``/``; ``api/v2`` nests under ``api``."""
    segments = name.replace("\\", "/").strip("/").split("/")
    if segments == [""]:
        return "it is empty."
    if any(s == "" for s in segments):
        return "it has an empty segment ('//')."
    if any(s in (".", "..") for s in segments):
        return "it must not have '.' or '..' segments."
    if any(_URL_SEGMENT_BAD.search(s) for s in segments):
        return "a URL path segment holds no control characters, '?', '#' or '%'."
    return None


def url_path(name: str) -> str:
    """The URL path of a VirtualApplication or VirtualDirectory ``name`` under its parent:
    ``/api``, ``/api/v2`` (backslashes read as ``/``, no trailing slash)."""
    return "/" + name.replace("\\", "/").strip("/")


def _fold(path: str) -> str:
    """IIS matches URL paths without regard to the case of ASCII letters."""
    return path.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _check_site_paths(ck: _Checker, site: Site, of: str) -> None:
    """Names of VirtualApplications and VirtualDirectories are URL paths, and no two of them
    (a VirtualDirectory of a VirtualApplication counts under the application's path) take the
    same URL path."""
    sw = f"Site '{site.name}' {of}"
    seen: dict[str, str] = {}
    mounts: list[tuple[str, str, int | None, str]] = []

    def mount(name: str, line: int | None, what: str, under: str = "") -> bool:
        why = url_path_problem(name)
        if why:
            ck.d(line, f"{what} has name '{name}', which is not a URL path: {why}")
            return False
        mounts.append((under + url_path(name), name, line, what))
        return True

    for v in site.virtual_applications:
        if mount(v.name, v.line, f"VirtualApplication '{v.name}' of {sw}"):
            for d in v.virtual_directories:
                dw = f"VirtualDirectory '{d.name}' of VirtualApplication '{v.name}' of {sw}"
                mount(d.name, d.line, dw, under=url_path(v.name))
    for d in site.virtual_directories:
        mount(d.name, d.line, f"VirtualDirectory '{d.name}' of {sw}")
    twice = _duplicates(v.name for v in site.virtual_applications)  # reported above
    for path, name, line, w in mounts:
        key = _fold(path)
        if key in seen:
            if not (w.startswith("VirtualApplication") and name in twice):
                ck.d(line, f"{w} takes the URL path '{path}', which {seen[key]} takes already.")
            continue
        seen[key] = w


def relative_path_problem(path: str, allow_empty: bool = False) -> str | None:
    """Why ``path`` is not a safe path relative to the service directory (None if it is)."""
    p = path.replace("\\", "/")
    if not p.strip() or p.strip() in (".", "./"):
        return None if allow_empty or p.strip() else "it is empty."
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        return "it must be relative to the service directory."
    if ".." in p.split("/"):
        return "it must stay inside the service directory (no '..')."
    return None


def _check_configuration(
    ck: _Checker, sd: ServiceDefinition, sc: ServiceConfiguration, limits: Limits
) -> None:
    if sc.service_name != sd.name:
        ck.c(
            sc.line,
            f"ServiceConfiguration has serviceName '{sc.service_name}' but the "
            f"ServiceDefinition is named '{sd.name}'; they must match.",
        )
    for name in sorted(_duplicates(r.name for r in sc.roles)):
        rc = [x for x in sc.roles if x.name == name][-1]
        ck.c(rc.line, f"Role '{name}' is configured twice.")
    configured = [r.name for r in sc.roles]
    for role in sd.roles:
        if role.name not in configured:
            ck.d(
                role.line,
                f"{role.kind.value} '{role.name}' has no <Role name=\"{role.name}\"> "
                f"in {ck.cscfg}.",
            )
    for rc in sc.roles:
        defined = sd.role(rc.name)
        if defined is None:
            ck.c(
                rc.line,
                f"Role '{rc.name}' is not defined in {ck.csdef};"
                + (did_you_mean(rc.name, sd.role_names) or " remove it or define it."),
            )
            continue
        _check_role_configuration(ck, defined, rc)
    if limits.max_instances is not None and sc.total_instances > limits.max_instances:
        ck.c(
            sc.line,
            f"ServiceConfiguration asks for {sc.total_instances} instances; Azure "
            f"allows at most {limits.max_instances} per deployment (see --skip-limits).",
        )
    lb_names = [lb.name for lb in sc.network.load_balancers] if sc.network else []
    for role in sd.roles:
        for ep in role.input_endpoints:
            if ep.load_balancer is not None and ep.load_balancer not in lb_names:
                ck.d(
                    ep.line,
                    f"InputEndpoint '{ep.name}' of role '{role.name}' names "
                    f"loadBalancer '{ep.load_balancer}', which {ck.cscfg} does not "
                    "define in <LoadBalancers>.",
                )
    if sc.network is not None:
        acl_names = [a.name for a in sc.network.access_controls]
        for acl in sc.network.access_controls:
            for order in sorted(_duplicates(str(r.order) for r in acl.rules)):
                rule = [r for r in acl.rules if str(r.order) == order][-1]
                ck.c(rule.line, f"AccessControl '{acl.name}' has two rules with order {order}.")
        for ea in sc.network.endpoint_acls:
            acl_role = sd.role(ea.role)
            if acl_role is None:
                ck.c(ea.line, f"EndpointAcl names role '{ea.role}', which is not defined.")
            elif acl_role.input_endpoint(ea.endpoint) is None:
                ck.c(
                    ea.line,
                    f"EndpointAcl names endpoint '{ea.endpoint}', which is not an "
                    f"InputEndpoint of role '{ea.role}'.",
                )
            if ea.access_control not in acl_names:
                ck.c(
                    ea.line,
                    f"EndpointAcl names accessControl '{ea.access_control}', which is "
                    "not defined in <AccessControls>.",
                )
        for ia in sc.network.instance_addresses:
            if sd.role(ia.role_name) is None:
                ck.c(ia.line, f"InstanceAddress names role '{ia.role_name}', which is not defined.")


def _check_role_configuration(ck: _Checker, role: Role, rc: RoleConfiguration) -> None:
    w = f"Role '{rc.name}'"
    if rc.instances < 1:
        ck.c(rc.instances_line, f"{w} has Instances count {rc.instances}; the minimum is 1.")
    if rc.vm_name is not None and len(rc.vm_name) > 10:
        ck.c(rc.line, f"{w} has vmName '{rc.vm_name}'; it may be at most 10 characters.")
    declared = role.setting_names
    given = [s.name for s in rc.settings]
    for name in sorted(_duplicates(given)):
        s = [x for x in rc.settings if x.name == name][-1]
        ck.c(s.line, f"Setting '{name}' of {w} is given twice.")
    for decl in role.settings:
        if decl.name not in given:
            ck.c(
                rc.line,
                f"{w} gives no value for setting '{decl.name}' declared in {ck.csdef} "
                f"line {decl.line}.",
            )
    for s in rc.settings:
        if s.name not in declared:
            ck.c(
                s.line,
                f"Setting '{s.name}' of {w} is not declared in {ck.csdef};"
                + (
                    did_you_mean(s.name, declared)
                    or " declare it in the role's <ConfigurationSettings>."
                ),
            )
    cert_decl = [c.name for c in role.certificates]
    cert_given = [c.name for c in rc.certificates]
    for c in role.certificates:
        if c.name not in cert_given:
            ck.c(
                rc.line,
                f"{w} gives no thumbprint for certificate '{c.name}' declared in "
                f"{ck.csdef} line {c.line}.",
            )
    for cg in rc.certificates:
        if cg.name not in cert_decl:
            ck.c(cg.line, f"Certificate '{cg.name}' of {w} is not declared in {ck.csdef}.")
        if not _HEX.match(cg.thumbprint):
            ck.c(
                cg.line,
                f"Certificate '{cg.name}' of {w} has thumbprint '{cg.thumbprint}'; "
                "thumbprints are hexadecimal with no spaces.",
            )
    for ie in role.instance_input_endpoints:
        r = ie.public_ports
        if r.min <= r.max and r.max - r.min + 1 < rc.instances:
            ck.c(
                rc.instances_line,
                f"{w} has {rc.instances} instances but InstanceInputEndpoint "
                f"'{ie.name}' has only {r.max - r.min + 1} public ports "
                f"({r.min}-{r.max}); each instance needs one.",
            )


def deploy_blockers(
    definition: ServiceDefinition, definition_file: str = "ServiceDefinition.csdef"
) -> list[Problem]:
    """Valid Azure input that cumulo cannot run; the controller refuses such a deployment."""
    out: list[Problem] = []
    for role in definition.roles:
        entry = role.runtime.entry_point if role.runtime else None
        if isinstance(entry, NetFxEntryPoint):
            out.append(
                Problem(
                    definition_file,
                    entry.line,
                    f"NetFxEntryPoint '{entry.assembly_name}' of role '{role.name}' "
                    "is a .NET assembly; cumulo runs programs (ProgramEntryPoint) "
                    "and Python sites only.",
                )
            )
        elif role.kind is RoleKind.WORKER and entry is None:
            out.append(
                Problem(
                    definition_file,
                    role.line,
                    f"WorkerRole '{role.name}' has no <Runtime><EntryPoint>"
                    "<ProgramEntryPoint>; cumulo has nothing to run for it.",
                )
            )
        for endpoint in role.input_endpoints:
            if str(endpoint.protocol) == "udp":
                out.append(
                    Problem(
                        definition_file,
                        endpoint.line,
                        f"InputEndpoint '{endpoint.name}' of role '{role.name}' has protocol "
                        "udp; cumulo's load balancer forwards TCP only (tcp, http, https).",
                    )
                )
        if role.kind is RoleKind.WEB and not role.sites and entry is None:
            out.append(
                Problem(
                    definition_file,
                    role.line,
                    f"WebRole '{role.name}' has no <Sites> (a legacy Hostable Web "
                    "Core role); cumulo hosts only roles with <Sites> or a "
                    "ProgramEntryPoint.",
                )
            )
    return out
