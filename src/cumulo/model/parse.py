"""Read ``.csdef`` and ``.cscfg`` bytes into the typed model, collecting every problem.

``read_definition`` / ``read_configuration`` return ``(model or None, problems)``; the
``parse_*`` wrappers raise ``ModelError`` with all problems. Syntax is checked here (unknown or
missing names, malformed numbers, enumerations, elements that may appear once); ranges and
cross-references are checked in ``cumulo.model.validate``.
"""

from __future__ import annotations

from cumulo.errors import ModelError, Problem
from cumulo.model._reader import Reader
from cumulo.model.configuration import (
    CSCFG_NAMESPACE,
    AccessControl,
    AclRule,
    CertificateThumbprint,
    DnsServer,
    EndpointAcl,
    FrontendIPConfiguration,
    InstanceAddress,
    LoadBalancerConfig,
    NetworkConfiguration,
    RoleConfiguration,
    ServiceConfiguration,
    SettingValue,
)
from cumulo.model.definition import (
    CSDEF_NAMESPACE,
    AppInterface,
    Binding,
    CertificateDeclaration,
    Content,
    EndpointProtocol,
    EntryPoint,
    EnvironmentVariable,
    ExecutionContext,
    Import,
    InputEndpoint,
    InstanceInputEndpoint,
    InternalEndpoint,
    LoadBalancerProbe,
    LocalStorage,
    NetFxEntryPoint,
    PortRange,
    ProbeProtocol,
    ProgramEntryPoint,
    Role,
    RoleEndpointRef,
    RoleKind,
    Runtime,
    ServiceDefinition,
    SettingDeclaration,
    Site,
    SiteAppDeclaration,
    StartupTask,
    TaskType,
    TrafficRule,
    VirtualApplication,
    VirtualDirectory,
)
from cumulo.model.xmlsafe import MAX_XML_BYTES, Node, parse_xml

_ROLE_CHILDREN = (
    "Certificates",
    "ConfigurationSettings",
    "Endpoints",
    "Imports",
    "LocalResources",
    "LocalStorage",
    "Runtime",
    "Startup",
    "Contents",
)
_APP_ATTRS = ("wsgiApp", "asgiApp")
_CUMULO_APP = {a: "{http://cumulo.dev/schemas/2026/service-model}" + a for a in _APP_ATTRS}
STORE_LOCATIONS = ("CurrentUser", "LocalMachine")
PERMISSION_LEVELS = ("limitedOrElevated", "elevated")
TOPOLOGY_DISCOVERY = ("Blast", "UpgradeDomainWalk")
IMPORT_MODULES = ("Diagnostics", "RemoteAccess", "RemoteForwarder")
LB_DISTRIBUTIONS = ("sourceIP", "sourceIPProtocol", "none")


def _label(tag: str, node: Node, of: str = "", attr: str = "name") -> str:
    """``Tag 'name' of ...`` when the element has a name, else ``Tag of ...``."""
    name = node.attrs.get(attr)
    head = f"{tag} '{name}'" if name else tag
    return f"{head} {of}".rstrip()


def _root(reader: Reader, data: bytes, max_bytes: int, tag: str, namespace: str) -> Node | None:
    tree = parse_xml(data, reader.file, max_bytes)
    if isinstance(tree, Problem):
        reader.problems.append(tree)
        return None
    if tree.tag != tag:
        reader.problem(tree.line, f"has root element <{tree.tag}>; expected <{tag}>.")
        return None
    if tree.namespace != namespace:
        shown = f"namespace '{tree.namespace}'" if tree.namespace else "no namespace"
        reader.problem(tree.line, f'<{tag}> is in {shown}; expected xmlns="{namespace}".')
        return None
    return tree


# ---------------------------------------------------------------------------------------------
# ServiceDefinition.csdef
# ---------------------------------------------------------------------------------------------


def read_definition(
    data: bytes, filename: str = "ServiceDefinition.csdef", max_bytes: int = MAX_XML_BYTES
) -> tuple[ServiceDefinition | None, list[Problem]]:
    """Parse a ``.csdef``: the model (None if unreadable) and every syntax problem."""
    r = Reader(filename, CSDEF_NAMESPACE)
    root = _root(r, data, max_bytes, "ServiceDefinition", CSDEF_NAMESPACE)
    if root is None:
        return None, r.problems
    what = "ServiceDefinition"
    kids = r.check(
        root,
        what,
        attrs=("name", "upgradeDomainCount", "topologyChangeDiscovery", "schemaVersion"),
        children=("WebRole", "WorkerRole", "LoadBalancerProbes", "NetworkTrafficRules"),
        repeatable=("WebRole", "WorkerRole"),
    )
    name = r.required(root, "name", what)
    udc = r.integer(root, "upgradeDomainCount", what)
    tcd = r.one_of(root, "topologyChangeDiscovery", what, TOPOLOGY_DISCOVERY, None)
    roles: list[Role] = []
    for child in root.children:  # document order across both kinds
        if child.namespace == CSDEF_NAMESPACE and child.tag in ("WebRole", "WorkerRole"):
            role = _role(r, child, RoleKind(child.tag))
            if role is not None:
                roles.append(role)
    probes: list[LoadBalancerProbe] = []
    for block in kids.get("LoadBalancerProbes", []):
        for p in r.check(
            block,
            "LoadBalancerProbes",
            children=("LoadBalancerProbe",),
            repeatable=("LoadBalancerProbe",),
        ).get("LoadBalancerProbe", []):
            probe = _probe(r, p)
            if probe is not None:
                probes.append(probe)
    rules: list[TrafficRule] = []
    for block in kids.get("NetworkTrafficRules", []):
        sub = r.check(
            block,
            "NetworkTrafficRules",
            children=("OnlyAllowTrafficTo",),
            repeatable=("OnlyAllowTrafficTo",),
        )
        for rule_node in sub.get("OnlyAllowTrafficTo", []):
            rules.append(_traffic_rule(r, rule_node))
    if name is None:
        return None, r.problems
    return (
        ServiceDefinition(
            name=name,
            roles=tuple(roles),
            upgrade_domain_count=5 if udc is None else udc,
            topology_change_discovery=tcd,
            schema_version=root.attrs.get("schemaVersion"),
            load_balancer_probes=tuple(probes),
            network_traffic_rules=tuple(rules),
            line=root.line,
        ),
        r.problems,
    )


def _role(r: Reader, node: Node, kind: RoleKind) -> Role | None:
    raw_name = node.attrs.get("name")
    what = f"{kind.value} '{raw_name}'" if raw_name else kind.value
    children = (*_ROLE_CHILDREN, "Sites") if kind is RoleKind.WEB else _ROLE_CHILDREN
    kids = r.check(
        node,
        what,
        attrs=("name", "vmsize", "enableNativeCodeExecution"),
        children=children,
        repeatable=("LocalStorage",),
    )
    name = r.required(node, "name", what)
    of = f"of role '{name}'"
    settings: list[SettingDeclaration] = []
    for block in kids.get("ConfigurationSettings", []):
        for s in r.check(
            block, f"ConfigurationSettings {of}", children=("Setting",), repeatable=("Setting",)
        ).get("Setting", []):
            sw = _label("Setting", s, of)
            r.check(s, sw, attrs=("name",))
            sname = r.required(s, "name", sw)
            if sname is not None:
                settings.append(SettingDeclaration(sname, line=s.line))
    certs: list[CertificateDeclaration] = []
    for block in kids.get("Certificates", []):
        for c in r.check(
            block, f"Certificates {of}", children=("Certificate",), repeatable=("Certificate",)
        ).get("Certificate", []):
            cert = _certificate_decl(r, c, of)
            if cert is not None:
                certs.append(cert)
    imports: list[Import] = []
    for block in kids.get("Imports", []):
        for i in r.check(block, f"Imports {of}", children=("Import",), repeatable=("Import",)).get(
            "Import", []
        ):
            iw = f"Import {of}"
            r.check(i, iw, attrs=("moduleName",))
            module = r.required(i, "moduleName", iw)
            if module is not None:
                chosen = r.one_of(i, "moduleName", iw, IMPORT_MODULES, None)
                if chosen is not None:
                    imports.append(Import(chosen, line=i.line))
    inputs: list[InputEndpoint] = []
    internals: list[InternalEndpoint] = []
    instance_inputs: list[InstanceInputEndpoint] = []
    for block in kids.get("Endpoints", []):
        ek = r.check(
            block,
            f"Endpoints {of}",
            children=("InputEndpoint", "InternalEndpoint", "InstanceInputEndpoint"),
            repeatable=("InputEndpoint", "InternalEndpoint", "InstanceInputEndpoint"),
        )
        for e in ek.get("InputEndpoint", []):
            ie = _input_endpoint(r, e, of)
            if ie is not None:
                inputs.append(ie)
        for e in ek.get("InternalEndpoint", []):
            it = _internal_endpoint(r, e, of)
            if it is not None:
                internals.append(it)
        for e in ek.get("InstanceInputEndpoint", []):
            ii = _instance_input_endpoint(r, e, of)
            if ii is not None:
                instance_inputs.append(ii)
    storage: list[LocalStorage] = []
    storage_nodes = list(kids.get("LocalStorage", []))  # legacy: directly under the role
    for block in kids.get("LocalResources", []):
        storage_nodes += r.check(
            block, f"LocalResources {of}", children=("LocalStorage",), repeatable=("LocalStorage",)
        ).get("LocalStorage", [])
    for ls in storage_nodes:
        lw = _label("LocalStorage", ls, of)
        r.check(ls, lw, attrs=("name", "sizeInMB", "cleanOnRoleRecycle"))
        lname = r.required(ls, "name", lw)
        lw = f"LocalStorage '{lname}' {of}"
        size = r.integer(ls, "sizeInMB", lw)
        clean = r.boolean(ls, "cleanOnRoleRecycle", lw, True)
        if lname is not None:
            storage.append(LocalStorage(lname, 100 if size is None else size, clean, line=ls.line))
    tasks: list[StartupTask] = []
    for block in kids.get("Startup", []):
        for n, t in enumerate(
            r.check(
                block,
                f"Startup {of}",
                attrs=("priority",),
                children=("Task",),
                repeatable=("Task",),
            ).get("Task", []),
            start=1,
        ):
            task = _task(r, t, f"Startup Task {n} {of}")
            if task is not None:
                tasks.append(task)
    runtime = None
    for block in kids.get("Runtime", []):
        runtime = _runtime(r, block, of)
    sites: list[Site] = []
    for block in kids.get("Sites", []):
        for s in r.check(block, f"Sites {of}", children=("Site",), repeatable=("Site",)).get(
            "Site", []
        ):
            site = _site(r, s, of)
            if site is not None:
                sites.append(site)
    contents: list[Content] = []
    for block in kids.get("Contents", []):
        for c in r.check(
            block, f"Contents {of}", children=("Content",), repeatable=("Content",)
        ).get("Content", []):
            content = _content(r, c, of)
            if content is not None:
                contents.append(content)
    vmsize = node.attrs.get("vmsize", "Small")
    native = r.boolean(node, "enableNativeCodeExecution", what, True)
    if name is None:
        return None
    return Role(
        name=name,
        kind=kind,
        vmsize=vmsize,
        enable_native_code_execution=native,
        settings=tuple(settings),
        certificates=tuple(certs),
        imports=tuple(imports),
        input_endpoints=tuple(inputs),
        internal_endpoints=tuple(internals),
        instance_input_endpoints=tuple(instance_inputs),
        local_storage=tuple(storage),
        startup_tasks=tuple(tasks),
        runtime=runtime,
        sites=tuple(sites),
        contents=tuple(contents),
        line=node.line,
    )


def _certificate_decl(r: Reader, c: Node, of: str) -> CertificateDeclaration | None:
    cw = _label("Certificate", c, of)
    r.check(c, cw, attrs=("name", "storeLocation", "storeName", "permissionLevel"))
    cname = r.required(c, "name", cw)
    cw = f"Certificate '{cname}' {of}"
    location = r.one_of(c, "storeLocation", cw, STORE_LOCATIONS, "LocalMachine")
    store = c.attrs.get("storeName", "My")
    level = r.one_of(c, "permissionLevel", cw, PERMISSION_LEVELS, "limitedOrElevated")
    if cname is None or location is None or level is None:
        return None
    return CertificateDeclaration(cname, location, store, level, line=c.line)


def _input_endpoint(r: Reader, e: Node, of: str) -> InputEndpoint | None:
    w = _label("InputEndpoint", e, of)
    r.check(
        e,
        w,
        attrs=(
            "name",
            "protocol",
            "port",
            "localPort",
            "certificate",
            "ignoreRoleInstanceStatus",
            "loadBalancerProbe",
            "loadBalancer",
            "idleTimeoutInMinutes",
            "loadBalancerDistribution",
        ),
    )
    name = r.required(e, "name", w)
    w = f"InputEndpoint '{name}' {of}"
    r.required(e, "protocol", w)
    protocol = r.choice(e, "protocol", w, EndpointProtocol, None)
    if protocol is EndpointProtocol.ANY:
        r.problem(
            e.line, f"{w} has protocol 'any'; input endpoints use 'http', 'https', 'tcp' or 'udp'."
        )
        protocol = None
    r.required(e, "port", w)
    port = r.integer(e, "port", w)
    local_raw = e.attrs.get("localPort")
    local: int | None
    if local_raw is not None and local_raw.strip() == "*":
        local = None
    else:
        parsed = r.integer(e, "localPort", w)
        local = port if parsed is None else parsed
    idle = r.integer(e, "idleTimeoutInMinutes", w)
    dist = r.one_of(e, "loadBalancerDistribution", w, LB_DISTRIBUTIONS, None)
    ignore = r.boolean(e, "ignoreRoleInstanceStatus", w, False)
    if name is None or protocol is None or port is None:
        return None
    return InputEndpoint(
        name=name,
        protocol=protocol,
        port=port,
        local_port=local,
        certificate=e.attrs.get("certificate"),
        ignore_role_instance_status=ignore,
        load_balancer_probe=e.attrs.get("loadBalancerProbe"),
        load_balancer=e.attrs.get("loadBalancer"),
        idle_timeout_minutes=4 if idle is None else idle,
        load_balancer_distribution=dist,
        line=e.line,
    )


def _port_range(r: Reader, node: Node, what: str) -> PortRange | None:
    r.check(node, what, attrs=("min", "max"))
    r.required(node, "min", what)
    r.required(node, "max", what)
    lo = r.integer(node, "min", what)
    hi = r.integer(node, "max", what)
    if lo is None or hi is None:
        return None
    return PortRange(lo, hi, line=node.line)


def _internal_endpoint(r: Reader, e: Node, of: str) -> InternalEndpoint | None:
    w = _label("InternalEndpoint", e, of)
    kids = r.check(
        e, w, attrs=("name", "protocol", "port"), children=("FixedPort", "FixedPortRange")
    )
    name = r.required(e, "name", w)
    w = f"InternalEndpoint '{name}' {of}"
    r.required(e, "protocol", w)
    protocol = r.choice(e, "protocol", w, EndpointProtocol, None)
    if protocol is EndpointProtocol.HTTPS:
        r.problem(
            e.line,
            f"{w} has protocol 'https'; internal endpoints use 'http', 'tcp', 'udp' or 'any'.",
        )
        protocol = None
    port = r.integer(e, "port", w)
    fixed = None
    for fp in kids.get("FixedPort", []):
        r.check(fp, f"FixedPort of {w}", attrs=("port",))
        r.required(fp, "port", f"FixedPort of {w}")
        fixed = r.integer(fp, "port", f"FixedPort of {w}")
    rng = None
    for fr in kids.get("FixedPortRange", []):
        rng = _port_range(r, fr, f"FixedPortRange of {w}")
    if "FixedPort" in kids and "FixedPortRange" in kids:
        r.problem(e.line, f"{w} has both <FixedPort> and <FixedPortRange>; use one.")
    if name is None or protocol is None:
        return None
    return InternalEndpoint(name, protocol, port, fixed, rng, line=e.line)


def _instance_input_endpoint(r: Reader, e: Node, of: str) -> InstanceInputEndpoint | None:
    w = _label("InstanceInputEndpoint", e, of)
    kids = r.check(
        e, w, attrs=("name", "localPort", "protocol"), children=("AllocatePublicPortFrom",)
    )
    name = r.required(e, "name", w)
    w = f"InstanceInputEndpoint '{name}' {of}"
    r.required(e, "protocol", w)
    protocol = r.choice(e, "protocol", w, EndpointProtocol, None)
    if protocol is not None and protocol not in (EndpointProtocol.TCP, EndpointProtocol.UDP):
        r.problem(
            e.line,
            f"{w} has protocol '{protocol.value}'; instance input endpoints use 'tcp' or 'udp'.",
        )
        protocol = None
    r.required(e, "localPort", w)
    local = r.integer(e, "localPort", w)
    rng = None
    alloc = kids.get("AllocatePublicPortFrom", [])
    if not alloc:
        r.problem(e.line, f"{w} lacks <AllocatePublicPortFrom><FixedPortRange .../>.")
    for a in alloc:
        ranges = r.check(a, f"AllocatePublicPortFrom of {w}", children=("FixedPortRange",))
        fr = ranges.get("FixedPortRange", [])
        if not fr:
            r.problem(a.line, f"AllocatePublicPortFrom of {w} lacks <FixedPortRange>.")
        for f in fr:
            rng = _port_range(r, f, f"FixedPortRange of {w}")
    if name is None or protocol is None or local is None or rng is None:
        return None
    return InstanceInputEndpoint(name, protocol, local, rng, line=e.line)


def _environment(r: Reader, block: Node, of: str) -> list[EnvironmentVariable]:
    out: list[EnvironmentVariable] = []
    for v in r.check(
        block, f"Environment {of}", children=("Variable",), repeatable=("Variable",)
    ).get("Variable", []):
        vw = _label("Variable", v, of)
        vk = r.check(v, vw, attrs=("name", "value"), children=("RoleInstanceValue",))
        vname = r.required(v, "name", vw)
        vw = f"Variable '{vname}' {of}"
        xpath = None
        for riv in vk.get("RoleInstanceValue", []):
            r.check(riv, f"RoleInstanceValue of {vw}", attrs=("xpath",))
            xpath = r.required(riv, "xpath", f"RoleInstanceValue of {vw}")
        value = v.attrs.get("value")
        if value is not None and vk.get("RoleInstanceValue"):
            r.problem(v.line, f"{vw} has both a value and a <RoleInstanceValue>; use one.")
            continue
        if value is None and not vk.get("RoleInstanceValue"):
            r.problem(v.line, f"{vw} has neither a value nor a <RoleInstanceValue xpath=...>.")
            continue
        if vname is None or (value is None and xpath is None):
            continue
        out.append(EnvironmentVariable(vname, value, xpath, line=v.line))
    return out


def _task(r: Reader, t: Node, w: str) -> StartupTask | None:
    kids = r.check(
        t, w, attrs=("commandLine", "executionContext", "taskType"), children=("Environment",)
    )
    cmd = r.required(t, "commandLine", w)
    ctx = r.choice(t, "executionContext", w, ExecutionContext, ExecutionContext.LIMITED)
    kind = r.choice(t, "taskType", w, TaskType, TaskType.SIMPLE)
    env: list[EnvironmentVariable] = []
    for block in kids.get("Environment", []):
        env = _environment(r, block, f"of {w}")
    if cmd is None or ctx is None or kind is None:
        return None
    return StartupTask(cmd, ctx, kind, tuple(env), line=t.line)


def _runtime(r: Reader, node: Node, of: str) -> Runtime | None:
    w = f"Runtime {of}"
    kids = r.check(node, w, attrs=("executionContext",), children=("Environment", "EntryPoint"))
    ctx = r.choice(node, "executionContext", w, ExecutionContext, ExecutionContext.LIMITED)
    env: list[EnvironmentVariable] = []
    for block in kids.get("Environment", []):
        env = _environment(r, block, of)
    entry: EntryPoint | None = None
    for block in kids.get("EntryPoint", []):
        ek = r.check(block, f"EntryPoint {of}", children=("ProgramEntryPoint", "NetFxEntryPoint"))
        if not ek:
            r.problem(block.line, f"EntryPoint {of} is empty; add <ProgramEntryPoint>.")
        if len(ek) > 1:
            r.problem(
                block.line,
                f"EntryPoint {of} has both <ProgramEntryPoint> and <NetFxEntryPoint>; use one.",
            )
        for p in ek.get("ProgramEntryPoint", []):
            pw = f"ProgramEntryPoint {of}"
            r.check(p, pw, attrs=("commandLine", "setReadyOnProcessStart"))
            cmd = r.required(p, "commandLine", pw)
            ready = r.boolean(p, "setReadyOnProcessStart", pw, True)
            if cmd is not None:
                entry = ProgramEntryPoint(cmd, ready, line=p.line)
        for n in ek.get("NetFxEntryPoint", []):
            nw = f"NetFxEntryPoint {of}"
            r.check(n, nw, attrs=("assemblyName", "targetFrameworkVersion"))
            asm = r.required(n, "assemblyName", nw)
            fw = n.attrs.get("targetFrameworkVersion", "")
            if asm is not None:
                entry = NetFxEntryPoint(asm, fw, line=n.line)
    if ctx is None:
        return None
    return Runtime(ctx, tuple(env), entry, line=node.line)


def _app_decl(r: Reader, node: Node, w: str) -> SiteAppDeclaration | None:
    wsgi = node.attrs.get(_CUMULO_APP["wsgiApp"])
    asgi = node.attrs.get(_CUMULO_APP["asgiApp"])
    if wsgi is not None and asgi is not None:
        r.problem(node.line, f"{w} has both cumulo:wsgiApp and cumulo:asgiApp; use one.")
        return None
    if wsgi is not None:
        return SiteAppDeclaration(AppInterface.WSGI, wsgi.strip(), line=node.line)
    if asgi is not None:
        return SiteAppDeclaration(AppInterface.ASGI, asgi.strip(), line=node.line)
    return None


def _vdir(r: Reader, node: Node, w: str) -> VirtualDirectory | None:
    r.check(node, w, attrs=("name", "physicalDirectory"))
    name = r.required(node, "name", w)
    path = r.required(node, "physicalDirectory", f"VirtualDirectory '{name}' of {w}")
    if name is None or path is None:
        return None
    return VirtualDirectory(name, path, line=node.line)


def _site(r: Reader, s: Node, of: str) -> Site | None:
    w = _label("Site", s, of)
    kids = r.check(
        s,
        w,
        attrs=("name", "physicalDirectory"),
        children=("VirtualApplication", "VirtualDirectory", "Bindings"),
        ext_attrs=_APP_ATTRS,
        repeatable=("VirtualApplication", "VirtualDirectory"),
    )
    name = r.required(s, "name", w)
    w = f"Site '{name}' {of}"
    bindings: list[Binding] = []
    if "Bindings" not in kids:
        r.problem(s.line, f"{w} has no <Bindings>; a Site needs at least one Binding.")
    for block in kids.get("Bindings", []):
        found = r.check(
            block, f"Bindings of {w}", children=("Binding",), repeatable=("Binding",)
        ).get("Binding", [])
        if not found:
            r.problem(block.line, f"Bindings of {w} is empty; add a <Binding>.")
        for b in found:
            bw = _label("Binding", b, f"of {w}")
            r.check(b, bw, attrs=("name", "endpointName", "hostHeader"))
            bname = r.required(b, "name", bw)
            ep = r.required(b, "endpointName", f"Binding '{bname}' of {w}")
            if bname is not None and ep is not None:
                bindings.append(Binding(bname, ep, b.attrs.get("hostHeader"), line=b.line))
    apps: list[VirtualApplication] = []
    for va in kids.get("VirtualApplication", []):
        vw = _label("VirtualApplication", va, f"of {w}")
        vk = r.check(
            va,
            vw,
            attrs=("name", "physicalDirectory"),
            children=("VirtualDirectory",),
            ext_attrs=_APP_ATTRS,
            repeatable=("VirtualDirectory",),
        )
        vname = r.required(va, "name", vw)
        vw = f"VirtualApplication '{vname}' of {w}"
        vpath = r.required(va, "physicalDirectory", vw)
        vdirs = [
            d
            for d in (
                _vdir(r, x, f"VirtualDirectory of {vw}") for x in vk.get("VirtualDirectory", [])
            )
            if d is not None
        ]
        app = _app_decl(r, va, vw)
        if vname is not None and vpath is not None:
            apps.append(VirtualApplication(vname, vpath, tuple(vdirs), app, line=va.line))
    dirs = [
        d
        for d in (_vdir(r, x, f"VirtualDirectory of {w}") for x in kids.get("VirtualDirectory", []))
        if d is not None
    ]
    app = _app_decl(r, s, w)
    if name is None:
        return None
    return Site(
        name,
        s.attrs.get("physicalDirectory"),
        tuple(bindings),
        tuple(apps),
        tuple(dirs),
        app,
        line=s.line,
    )


def _content(r: Reader, c: Node, of: str) -> Content | None:
    w = f"Content {of}"
    kids = r.check(c, w, attrs=("destination",), children=("SourceDirectory",))
    dest = r.required(c, "destination", w)
    src = None
    sd = kids.get("SourceDirectory", [])
    if not sd:
        r.problem(c.line, f"{w} lacks <SourceDirectory path=...>.")
    for s in sd:
        r.check(s, f"SourceDirectory of {w}", attrs=("path",))
        src = r.required(s, "path", f"SourceDirectory of {w}")
    if dest is None or src is None:
        return None
    return Content(dest, src, line=c.line)


def _probe(r: Reader, p: Node) -> LoadBalancerProbe | None:
    w = _label("LoadBalancerProbe", p)
    r.check(
        p, w, attrs=("name", "protocol", "path", "port", "intervalInSeconds", "timeoutInSeconds")
    )
    name = r.required(p, "name", w)
    w = f"LoadBalancerProbe '{name}'"
    r.required(p, "protocol", w)
    protocol = r.choice(p, "protocol", w, ProbeProtocol, None)
    port = r.integer(p, "port", w)
    interval = r.integer(p, "intervalInSeconds", w)
    timeout = r.integer(p, "timeoutInSeconds", w)
    if name is None or protocol is None:
        return None
    return LoadBalancerProbe(
        name,
        protocol,
        p.attrs.get("path"),
        port,
        15 if interval is None else interval,
        31 if timeout is None else timeout,
        line=p.line,
    )


def _traffic_rule(r: Reader, node: Node) -> TrafficRule:
    w = "OnlyAllowTrafficTo"
    kids = r.check(node, w, children=("Destinations", "AllowAllTraffic", "WhenSource"))
    dests: list[RoleEndpointRef] = []
    for d in kids.get("Destinations", []):
        for re_ in r.check(
            d, f"Destinations of {w}", children=("RoleEndpoint",), repeatable=("RoleEndpoint",)
        ).get("RoleEndpoint", []):
            rw = f"RoleEndpoint of {w}"
            r.check(re_, rw, attrs=("endpointName", "roleName"))
            ep = r.required(re_, "endpointName", rw)
            role = r.required(re_, "roleName", rw)
            if ep is not None and role is not None:
                dests.append(RoleEndpointRef(role, ep, line=re_.line))
    if not kids.get("Destinations"):
        r.problem(node.line, f"{w} lacks <Destinations>.")
    allow_all = "AllowAllTraffic" in kids
    for a in kids.get("AllowAllTraffic", []):
        r.check(a, f"AllowAllTraffic of {w}")
    sources: list[str] = []
    for ws in kids.get("WhenSource", []):
        sw = f"WhenSource of {w}"
        wk = r.check(ws, sw, attrs=("matches",), children=("FromRole",), repeatable=("FromRole",))
        r.one_of(ws, "matches", sw, ("AnyRule",), "AnyRule")
        for fr in wk.get("FromRole", []):
            r.check(fr, f"FromRole of {w}", attrs=("roleName",))
            rn = r.required(fr, "roleName", f"FromRole of {w}")
            if rn is not None:
                sources.append(rn)
    if allow_all and "WhenSource" in kids:
        r.problem(node.line, f"{w} has both <AllowAllTraffic> and <WhenSource>; use one.")
    if not allow_all and "WhenSource" not in kids:
        r.problem(node.line, f"{w} has neither <AllowAllTraffic> nor <WhenSource>.")
    return TrafficRule(tuple(dests), allow_all, tuple(sources), line=node.line)


# ---------------------------------------------------------------------------------------------
# ServiceConfiguration.cscfg
# ---------------------------------------------------------------------------------------------


def read_configuration(
    data: bytes, filename: str = "ServiceConfiguration.cscfg", max_bytes: int = MAX_XML_BYTES
) -> tuple[ServiceConfiguration | None, list[Problem]]:
    """Parse a ``.cscfg``: the model (None if unreadable) and every syntax problem."""
    r = Reader(filename, CSCFG_NAMESPACE)
    root = _root(r, data, max_bytes, "ServiceConfiguration", CSCFG_NAMESPACE)
    if root is None:
        return None, r.problems
    what = "ServiceConfiguration"
    kids = r.check(
        root,
        what,
        attrs=("serviceName", "osFamily", "osVersion", "schemaVersion"),
        children=("Role", "NetworkConfiguration"),
        repeatable=("Role",),
    )
    name = r.required(root, "serviceName", what)
    roles = [x for x in (_role_config(r, n) for n in kids.get("Role", [])) if x is not None]
    network = None
    for block in kids.get("NetworkConfiguration", []):
        network = _network(r, block)
    if name is None:
        return None, r.problems
    return (
        ServiceConfiguration(
            service_name=name,
            roles=tuple(roles),
            os_family=root.attrs.get("osFamily"),
            os_version=root.attrs.get("osVersion"),
            schema_version=root.attrs.get("schemaVersion"),
            network=network,
            line=root.line,
        ),
        r.problems,
    )


def _role_config(r: Reader, node: Node) -> RoleConfiguration | None:
    w = _label("Role", node)
    kids = r.check(
        node,
        w,
        attrs=("name", "vmName"),
        children=("Instances", "ConfigurationSettings", "Certificates", "OsImage"),
    )
    name = r.required(node, "name", w)
    w = f"Role '{name}'"
    count = None
    count_line = node.line
    inst = kids.get("Instances", [])
    if not inst:
        r.problem(node.line, f"{w} lacks <Instances count=...>.")
    for i in inst:
        r.check(i, f"Instances of {w}", attrs=("count",))
        count_line = i.line
        if r.required(i, "count", f"Instances of {w}") is not None:
            count = r.integer(i, "count", f"Instances of {w}")
    for o in kids.get("OsImage", []):
        r.check(o, f"OsImage of {w}", attrs=("href",))
    settings: list[SettingValue] = []
    for block in kids.get("ConfigurationSettings", []):
        for s in r.check(
            block, f"ConfigurationSettings of {w}", children=("Setting",), repeatable=("Setting",)
        ).get("Setting", []):
            sw = _label("Setting", s, f"of {w}")
            r.check(s, sw, attrs=("name", "value"))
            sname = r.required(s, "name", sw)
            value = s.attrs.get("value")
            if value is None and sname is not None:
                r.problem(s.line, f"Setting '{sname}' of {w} lacks the required attribute 'value'.")
            if sname is not None and value is not None:
                settings.append(SettingValue(sname, value, line=s.line))
    certs: list[CertificateThumbprint] = []
    for block in kids.get("Certificates", []):
        for c in r.check(
            block, f"Certificates of {w}", children=("Certificate",), repeatable=("Certificate",)
        ).get("Certificate", []):
            cw = _label("Certificate", c, f"of {w}")
            r.check(c, cw, attrs=("name", "thumbprint", "thumbprintAlgorithm"))
            cname = r.required(c, "name", cw)
            thumb = r.required(c, "thumbprint", f"Certificate '{cname}' of {w}")
            algo = c.attrs.get("thumbprintAlgorithm", "sha1")
            if cname is not None and thumb is not None:
                certs.append(CertificateThumbprint(cname, thumb, algo, line=c.line))
    if name is None or count is None:
        return None
    return RoleConfiguration(
        name,
        count,
        tuple(settings),
        tuple(certs),
        node.attrs.get("vmName"),
        line=node.line,
        instances_line=count_line,
    )


def _network(r: Reader, node: Node) -> NetworkConfiguration:
    w = "NetworkConfiguration"
    kids = r.check(
        node,
        w,
        children=(
            "AccessControls",
            "EndpointAcls",
            "Dns",
            "VirtualNetworkSite",
            "AddressAssignments",
            "LoadBalancers",
        ),
    )
    acls: list[AccessControl] = []
    for block in kids.get("AccessControls", []):
        for a in r.check(
            block, "AccessControls", children=("AccessControl",), repeatable=("AccessControl",)
        ).get("AccessControl", []):
            aw = _label("AccessControl", a)
            ak = r.check(a, aw, attrs=("name",), children=("Rule",), repeatable=("Rule",))
            aname = r.required(a, "name", aw)
            aw = f"AccessControl '{aname}'"
            rules: list[AclRule] = []
            for rule in ak.get("Rule", []):
                rw = f"Rule of {aw}"
                r.check(rule, rw, attrs=("order", "action", "remoteSubnet", "description"))
                r.required(rule, "order", rw)
                order = r.integer(rule, "order", rw)
                r.required(rule, "action", rw)
                action = r.one_of(rule, "action", rw, ("permit", "deny"), None)
                subnet = r.required(rule, "remoteSubnet", rw)
                if order is not None and action is not None and subnet is not None:
                    rules.append(
                        AclRule(
                            order, action, subnet, rule.attrs.get("description"), line=rule.line
                        )
                    )
            if aname is not None:
                acls.append(AccessControl(aname, tuple(rules), line=a.line))
    eacls: list[EndpointAcl] = []
    for block in kids.get("EndpointAcls", []):
        for e in r.check(
            block, "EndpointAcls", children=("EndpointAcl",), repeatable=("EndpointAcl",)
        ).get("EndpointAcl", []):
            ew = "EndpointAcl"
            r.check(e, ew, attrs=("role", "endpoint", "accessControl"))
            role = r.required(e, "role", ew)
            ep = r.required(e, "endpoint", ew)
            ac = r.required(e, "accessControl", ew)
            if role is not None and ep is not None and ac is not None:
                eacls.append(EndpointAcl(role, ep, ac, line=e.line))
    dns: list[DnsServer] = []
    for block in kids.get("Dns", []):
        for servers in r.check(block, "Dns", children=("DnsServers",)).get("DnsServers", []):
            for d in r.check(
                servers, "DnsServers", children=("DnsServer",), repeatable=("DnsServer",)
            ).get("DnsServer", []):
                r.check(d, "DnsServer", attrs=("name", "IPAddress"))
                dname = r.required(d, "name", "DnsServer")
                ip = r.required(d, "IPAddress", f"DnsServer '{dname}'")
                if dname is not None and ip is not None:
                    dns.append(DnsServer(dname, ip, line=d.line))
    vnet = None
    for v in kids.get("VirtualNetworkSite", []):
        r.check(v, "VirtualNetworkSite", attrs=("name",))
        vnet = r.required(v, "name", "VirtualNetworkSite")
    addresses: list[InstanceAddress] = []
    reserved: list[str] = []
    for block in kids.get("AddressAssignments", []):
        ak = r.check(
            block,
            "AddressAssignments",
            children=("InstanceAddress", "ReservedIPs"),
            repeatable=("InstanceAddress",),
        )
        for ia in ak.get("InstanceAddress", []):
            iw = "InstanceAddress"
            ik = r.check(ia, iw, attrs=("roleName",), children=("Subnets", "PublicIPs"))
            rn = r.required(ia, "roleName", iw)
            subnets: list[str] = []
            for sb in ik.get("Subnets", []):
                for s in r.check(sb, "Subnets", children=("Subnet",), repeatable=("Subnet",)).get(
                    "Subnet", []
                ):
                    r.check(s, "Subnet", attrs=("name",))
                    sn = r.required(s, "name", "Subnet")
                    if sn is not None:
                        subnets.append(sn)
            pips: list[str] = []
            for pb in ik.get("PublicIPs", []):
                for p in r.check(
                    pb, "PublicIPs", children=("PublicIP",), repeatable=("PublicIP",)
                ).get("PublicIP", []):
                    r.check(
                        p, "PublicIP", attrs=("name", "idleTimeoutInMinutes", "domainNameLabel")
                    )
                    pn = r.required(p, "name", "PublicIP")
                    if pn is not None:
                        pips.append(pn)
            if rn is not None:
                addresses.append(InstanceAddress(rn, tuple(subnets), tuple(pips), line=ia.line))
        for rb in ak.get("ReservedIPs", []):
            for rip in r.check(
                rb, "ReservedIPs", children=("ReservedIP",), repeatable=("ReservedIP",)
            ).get("ReservedIP", []):
                r.check(rip, "ReservedIP", attrs=("name",))
                rname = r.required(rip, "name", "ReservedIP")
                if rname is not None:
                    reserved.append(rname)
    lbs: list[LoadBalancerConfig] = []
    for block in kids.get("LoadBalancers", []):
        for lb in r.check(
            block, "LoadBalancers", children=("LoadBalancer",), repeatable=("LoadBalancer",)
        ).get("LoadBalancer", []):
            lw = _label("LoadBalancer", lb)
            lk = r.check(lb, lw, attrs=("name",), children=("FrontendIPConfiguration",))
            lname = r.required(lb, "name", lw)
            frontend = None
            for f in lk.get("FrontendIPConfiguration", []):
                fw = f"FrontendIPConfiguration of LoadBalancer '{lname}'"
                r.check(f, fw, attrs=("type", "subnet", "staticVirtualNetworkIPAddress"))
                ftype = r.required(f, "type", fw)
                if ftype is not None:
                    frontend = FrontendIPConfiguration(
                        ftype,
                        f.attrs.get("subnet"),
                        f.attrs.get("staticVirtualNetworkIPAddress"),
                        line=f.line,
                    )
            if lname is not None:
                lbs.append(LoadBalancerConfig(lname, frontend, line=lb.line))
    return NetworkConfiguration(
        tuple(acls),
        tuple(eacls),
        tuple(dns),
        vnet,
        tuple(addresses),
        tuple(reserved),
        tuple(lbs),
        line=node.line,
    )


# ---------------------------------------------------------------------------------------------
# Raising wrappers
# ---------------------------------------------------------------------------------------------


def parse_definition(data: bytes, filename: str = "ServiceDefinition.csdef") -> ServiceDefinition:
    """Parse a ``.csdef`` or raise ``ModelError`` listing every syntax problem."""
    model, problems = read_definition(data, filename)
    if problems or model is None:
        raise ModelError(problems or [Problem(filename, None, "could not be read.")])
    return model


def parse_configuration(
    data: bytes, filename: str = "ServiceConfiguration.cscfg"
) -> ServiceConfiguration:
    """Parse a ``.cscfg`` or raise ``ModelError`` listing every syntax problem."""
    model, problems = read_configuration(data, filename)
    if problems or model is None:
        raise ModelError(problems or [Problem(filename, None, "could not be read.")])
    return model
