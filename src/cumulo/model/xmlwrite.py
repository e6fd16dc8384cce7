"""Write the model back as ``.csdef`` / ``.cscfg`` XML (the inverse of ``cumulo.model.parse``).

Every attribute is written explicitly (defaults included), so reading the output gives back an
equal model. Used by property tests and by tools that generate services.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cumulo.model.configuration import CSCFG_NAMESPACE, ServiceConfiguration
from cumulo.model.definition import (
    CSDEF_NAMESPACE,
    CUMULO_NAMESPACE,
    AppInterface,
    EnvironmentVariable,
    NetFxEntryPoint,
    PortRange,
    ProgramEntryPoint,
    Role,
    RoleKind,
    ServiceDefinition,
    SiteAppDeclaration,
    VirtualDirectory,
)


def _b(value: bool) -> str:
    return "true" if value else "false"


def _el(parent: ET.Element, ns: str, tag: str, **attrs: str | None) -> ET.Element:
    return ET.SubElement(
        parent, f"{{{ns}}}{tag}", {k: v for k, v in attrs.items() if v is not None}
    )


def _to_bytes(root: ET.Element) -> bytes:
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"


def definition_to_xml(sd: ServiceDefinition) -> bytes:
    """The ``.csdef`` text of ``sd``."""
    ET.register_namespace("", CSDEF_NAMESPACE)
    ET.register_namespace("cumulo", CUMULO_NAMESPACE)
    ns = CSDEF_NAMESPACE
    root = ET.Element(
        f"{{{ns}}}ServiceDefinition",
        {
            k: v
            for k, v in {
                "name": sd.name,
                "upgradeDomainCount": str(sd.upgrade_domain_count),
                "topologyChangeDiscovery": sd.topology_change_discovery,
                "schemaVersion": sd.schema_version,
            }.items()
            if v is not None
        },
    )
    for role in sd.roles:
        _role(root, role)
    if sd.load_balancer_probes:
        block = _el(root, ns, "LoadBalancerProbes")
        for p in sd.load_balancer_probes:
            _el(
                block,
                ns,
                "LoadBalancerProbe",
                name=p.name,
                protocol=p.protocol.value,
                path=p.path,
                port=None if p.port is None else str(p.port),
                intervalInSeconds=str(p.interval_seconds),
                timeoutInSeconds=str(p.timeout_seconds),
            )
    if sd.network_traffic_rules:
        block = _el(root, ns, "NetworkTrafficRules")
        for rule in sd.network_traffic_rules:
            r = _el(block, ns, "OnlyAllowTrafficTo")
            dests = _el(r, ns, "Destinations")
            for d in rule.destinations:
                _el(dests, ns, "RoleEndpoint", endpointName=d.endpoint_name, roleName=d.role_name)
            if rule.allow_all:
                _el(r, ns, "AllowAllTraffic")
            else:
                ws = _el(r, ns, "WhenSource", matches="AnyRule")
                for src in rule.from_roles:
                    _el(ws, ns, "FromRole", roleName=src)
    return _to_bytes(root)


def _app_attrs(el: ET.Element, app: SiteAppDeclaration | None) -> None:
    if app is not None:
        attr = "wsgiApp" if app.interface is AppInterface.WSGI else "asgiApp"
        el.set(f"{{{CUMULO_NAMESPACE}}}{attr}", app.handler)


def _range(parent: ET.Element, rng: PortRange) -> None:
    _el(parent, CSDEF_NAMESPACE, "FixedPortRange", min=str(rng.min), max=str(rng.max))


def _env(parent: ET.Element, env: tuple[EnvironmentVariable, ...]) -> None:
    if not env:
        return
    block = _el(parent, CSDEF_NAMESPACE, "Environment")
    for v in env:
        var = _el(block, CSDEF_NAMESPACE, "Variable", name=v.name, value=v.value)
        if v.xpath is not None:
            _el(var, CSDEF_NAMESPACE, "RoleInstanceValue", xpath=v.xpath)


def _vdir(parent: ET.Element, d: VirtualDirectory) -> None:
    _el(
        parent,
        CSDEF_NAMESPACE,
        "VirtualDirectory",
        name=d.name,
        physicalDirectory=d.physical_directory,
    )


def _role(root: ET.Element, role: Role) -> None:
    ns = CSDEF_NAMESPACE
    el = _el(
        root,
        ns,
        role.kind.value,
        name=role.name,
        vmsize=role.vmsize,
        enableNativeCodeExecution=_b(role.enable_native_code_execution),
    )
    if role.sites and role.kind is RoleKind.WEB:
        sites = _el(el, ns, "Sites")
        for s in role.sites:
            site = _el(sites, ns, "Site", name=s.name, physicalDirectory=s.physical_directory)
            _app_attrs(site, s.app)
            for va in s.virtual_applications:
                v = _el(
                    site,
                    ns,
                    "VirtualApplication",
                    name=va.name,
                    physicalDirectory=va.physical_directory,
                )
                _app_attrs(v, va.app)
                for d in va.virtual_directories:
                    _vdir(v, d)
            for d in s.virtual_directories:
                _vdir(site, d)
            bindings = _el(site, ns, "Bindings")
            for b in s.bindings:
                _el(
                    bindings,
                    ns,
                    "Binding",
                    name=b.name,
                    endpointName=b.endpoint_name,
                    hostHeader=b.host_header,
                )
    if role.startup_tasks:
        startup = _el(el, ns, "Startup")
        for t in role.startup_tasks:
            task = _el(
                startup,
                ns,
                "Task",
                commandLine=t.command_line,
                executionContext=t.execution_context.value,
                taskType=t.task_type.value,
            )
            _env(task, t.environment)
    if role.runtime is not None:
        rt = _el(el, ns, "Runtime", executionContext=role.runtime.execution_context.value)
        _env(rt, role.runtime.environment)
        entry = role.runtime.entry_point
        if entry is not None:
            ep = _el(rt, ns, "EntryPoint")
            if isinstance(entry, ProgramEntryPoint):
                _el(
                    ep,
                    ns,
                    "ProgramEntryPoint",
                    commandLine=entry.command_line,
                    setReadyOnProcessStart=_b(entry.set_ready_on_process_start),
                )
            elif isinstance(entry, NetFxEntryPoint):
                _el(
                    ep,
                    ns,
                    "NetFxEntryPoint",
                    assemblyName=entry.assembly_name,
                    targetFrameworkVersion=entry.target_framework_version,
                )
    if role.input_endpoints or role.internal_endpoints or role.instance_input_endpoints:
        eps = _el(el, ns, "Endpoints")
        for e in role.input_endpoints:
            _el(
                eps,
                ns,
                "InputEndpoint",
                name=e.name,
                protocol=e.protocol.value,
                port=str(e.port),
                localPort="*" if e.local_port is None else str(e.local_port),
                certificate=e.certificate,
                ignoreRoleInstanceStatus=_b(e.ignore_role_instance_status),
                loadBalancerProbe=e.load_balancer_probe,
                loadBalancer=e.load_balancer,
                idleTimeoutInMinutes=str(e.idle_timeout_minutes),
                loadBalancerDistribution=e.load_balancer_distribution,
            )
        for i in role.internal_endpoints:
            ie = _el(
                eps,
                ns,
                "InternalEndpoint",
                name=i.name,
                protocol=i.protocol.value,
                port=None if i.port is None else str(i.port),
            )
            if i.fixed_port is not None:
                _el(ie, ns, "FixedPort", port=str(i.fixed_port))
            if i.fixed_port_range is not None:
                _range(ie, i.fixed_port_range)
        for x in role.instance_input_endpoints:
            xe = _el(
                eps,
                ns,
                "InstanceInputEndpoint",
                name=x.name,
                localPort=str(x.local_port),
                protocol=x.protocol.value,
            )
            _range(_el(xe, ns, "AllocatePublicPortFrom"), x.public_ports)
    if role.imports:
        imports = _el(el, ns, "Imports")
        for imp in role.imports:
            _el(imports, ns, "Import", moduleName=imp.module_name)
    if role.settings:
        block = _el(el, ns, "ConfigurationSettings")
        for decl in role.settings:
            _el(block, ns, "Setting", name=decl.name)
    if role.local_storage:
        block = _el(el, ns, "LocalResources")
        for ls in role.local_storage:
            _el(
                block,
                ns,
                "LocalStorage",
                name=ls.name,
                sizeInMB=str(ls.size_mb),
                cleanOnRoleRecycle=_b(ls.clean_on_role_recycle),
            )
    if role.certificates:
        block = _el(el, ns, "Certificates")
        for c in role.certificates:
            _el(
                block,
                ns,
                "Certificate",
                name=c.name,
                storeLocation=c.store_location,
                storeName=c.store_name,
                permissionLevel=c.permission_level,
            )
    if role.contents:
        block = _el(el, ns, "Contents")
        for content in role.contents:
            ce = _el(block, ns, "Content", destination=content.destination)
            _el(ce, ns, "SourceDirectory", path=content.source_directory)


def configuration_to_xml(sc: ServiceConfiguration) -> bytes:
    """The ``.cscfg`` text of ``sc``."""
    ET.register_namespace("", CSCFG_NAMESPACE)
    ns = CSCFG_NAMESPACE
    root = ET.Element(
        f"{{{ns}}}ServiceConfiguration",
        {
            k: v
            for k, v in {
                "serviceName": sc.service_name,
                "osFamily": sc.os_family,
                "osVersion": sc.os_version,
                "schemaVersion": sc.schema_version,
            }.items()
            if v is not None
        },
    )
    for rc in sc.roles:
        role = _el(root, ns, "Role", name=rc.name, vmName=rc.vm_name)
        _el(role, ns, "Instances", count=str(rc.instances))
        if rc.settings:
            block = _el(role, ns, "ConfigurationSettings")
            for s in rc.settings:
                _el(block, ns, "Setting", name=s.name, value=s.value)
        if rc.certificates:
            block = _el(role, ns, "Certificates")
            for c in rc.certificates:
                _el(
                    block,
                    ns,
                    "Certificate",
                    name=c.name,
                    thumbprint=c.thumbprint,
                    thumbprintAlgorithm=c.thumbprint_algorithm,
                )
    net = sc.network
    if net is not None:
        n = _el(root, ns, "NetworkConfiguration")
        if net.access_controls:
            block = _el(n, ns, "AccessControls")
            for acl in net.access_controls:
                a = _el(block, ns, "AccessControl", name=acl.name)
                for rule in acl.rules:
                    _el(
                        a,
                        ns,
                        "Rule",
                        order=str(rule.order),
                        action=rule.action,
                        remoteSubnet=rule.remote_subnet,
                        description=rule.description,
                    )
        if net.endpoint_acls:
            block = _el(n, ns, "EndpointAcls")
            for ea in net.endpoint_acls:
                _el(
                    block,
                    ns,
                    "EndpointAcl",
                    role=ea.role,
                    endpoint=ea.endpoint,
                    accessControl=ea.access_control,
                )
        if net.dns_servers:
            servers = _el(_el(n, ns, "Dns"), ns, "DnsServers")
            for d in net.dns_servers:
                _el(servers, ns, "DnsServer", name=d.name, IPAddress=d.ip_address)
        if net.virtual_network_site is not None:
            _el(n, ns, "VirtualNetworkSite", name=net.virtual_network_site)
        if net.instance_addresses or net.reserved_ips:
            aa = _el(n, ns, "AddressAssignments")
            for ia in net.instance_addresses:
                i = _el(aa, ns, "InstanceAddress", roleName=ia.role_name)
                if ia.subnets:
                    subnets = _el(i, ns, "Subnets")
                    for s_name in ia.subnets:
                        _el(subnets, ns, "Subnet", name=s_name)
                if ia.public_ips:
                    pips = _el(i, ns, "PublicIPs")
                    for p_name in ia.public_ips:
                        _el(pips, ns, "PublicIP", name=p_name)
            if net.reserved_ips:
                rips = _el(aa, ns, "ReservedIPs")
                for r_name in net.reserved_ips:
                    _el(rips, ns, "ReservedIP", name=r_name)
        if net.load_balancers:
            block = _el(n, ns, "LoadBalancers")
            for lb in net.load_balancers:
                le = _el(block, ns, "LoadBalancer", name=lb.name)
                if lb.frontend is not None:
                    _el(
                        le,
                        ns,
                        "FrontendIPConfiguration",
                        type=lb.frontend.type,
                        subnet=lb.frontend.subnet,
                        staticVirtualNetworkIPAddress=lb.frontend.static_ip_address,
                    )
    return _to_bytes(root)
