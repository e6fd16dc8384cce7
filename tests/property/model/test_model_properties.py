"""Properties of the model: XML round trip, diff(a, a) is empty, endpoint changes block swaps."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo.model import Service, read_configuration, read_definition, validate
from cumulo.model.configuration import (
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
    AppInterface,
    Binding,
    CertificateDeclaration,
    Content,
    EndpointProtocol,
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
from cumulo.model.diff import diff
from cumulo.model.xmlwrite import configuration_to_xml, definition_to_xml
from cumulo.model.xpaths import SUPPORTED_FORMS

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,11}", fullmatch=True)
# What an XML 1.0 document can hold (a model only ever comes from one): no controls, no
# surrogates, and not the noncharacters U+FFFE and U+FFFF, which expat calls an invalid token.
XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
TEXT = st.text(alphabet=XML_CHARS, min_size=1, max_size=20).filter(lambda s: s.strip() != "")
ANY_TEXT = st.text(alphabet=XML_CHARS, max_size=20)
INTS = st.integers(min_value=-5, max_value=70000)
OPT = st.none
XPATHS = st.sampled_from(SUPPORTED_FORMS)


def _unique(items: st.SearchStrategy, key, max_size: int = 3):  # type: ignore[no-untyped-def]
    return st.lists(items, max_size=max_size, unique_by=key).map(tuple)


port_range = st.builds(PortRange, INTS, INTS)
env_var = st.one_of(
    st.builds(EnvironmentVariable, NAMES, value=ANY_TEXT),
    st.builds(EnvironmentVariable, NAMES, xpath=XPATHS),
)
envs = _unique(env_var, lambda v: v.name)
input_endpoint = st.builds(
    InputEndpoint,
    name=NAMES,
    protocol=st.sampled_from([p for p in EndpointProtocol if p is not EndpointProtocol.ANY]),
    port=INTS,
    local_port=st.none() | INTS,
    certificate=st.none() | NAMES,
    ignore_role_instance_status=st.booleans(),
    load_balancer_probe=st.none() | NAMES,
    load_balancer=st.none() | NAMES,
    idle_timeout_minutes=INTS,
    load_balancer_distribution=st.none()
    | st.sampled_from(["sourceIP", "sourceIPProtocol", "none"]),
)
internal_endpoint = st.one_of(
    st.builds(
        InternalEndpoint,
        NAMES,
        st.sampled_from(
            [
                EndpointProtocol.HTTP,
                EndpointProtocol.TCP,
                EndpointProtocol.UDP,
                EndpointProtocol.ANY,
            ]
        ),
        st.none() | INTS,
    ),
    st.builds(InternalEndpoint, NAMES, st.just(EndpointProtocol.TCP), fixed_port=INTS),
    st.builds(InternalEndpoint, NAMES, st.just(EndpointProtocol.TCP), fixed_port_range=port_range),
)
instance_input = st.builds(
    InstanceInputEndpoint,
    NAMES,
    st.sampled_from([EndpointProtocol.TCP, EndpointProtocol.UDP]),
    INTS,
    port_range,
)
app_decl = st.none() | st.builds(
    SiteAppDeclaration, st.sampled_from(list(AppInterface)), st.sampled_from(["app:app", "m.n:f()"])
)
vdir = st.builds(VirtualDirectory, NAMES, TEXT.map(str.strip).filter(bool))
site = st.builds(
    Site,
    name=NAMES,
    physical_directory=st.none() | NAMES,
    bindings=st.lists(
        st.builds(Binding, NAMES, NAMES, st.none() | NAMES), min_size=1, max_size=2
    ).map(tuple),
    virtual_applications=_unique(
        st.builds(VirtualApplication, NAMES, NAMES, _unique(vdir, lambda d: d.name), app_decl),
        lambda v: v.name,
        max_size=2,
    ),
    virtual_directories=_unique(vdir, lambda d: d.name, max_size=2),
    app=app_decl,
)
runtime = st.builds(
    Runtime,
    st.sampled_from(list(ExecutionContext)),
    envs,
    st.none()
    | st.builds(ProgramEntryPoint, TEXT, st.booleans())
    | st.builds(NetFxEntryPoint, NAMES, ANY_TEXT),
)


@st.composite
def roles(draw: st.DrawFn, name: str) -> Role:
    kind = draw(st.sampled_from(list(RoleKind)))
    return Role(
        name=name,
        kind=kind,
        vmsize=draw(st.sampled_from(["Small", "Medium", "A5", "Huge"])),
        enable_native_code_execution=draw(st.booleans()),
        settings=draw(_unique(st.builds(SettingDeclaration, NAMES), lambda s: s.name)),
        certificates=draw(
            _unique(
                st.builds(
                    CertificateDeclaration,
                    NAMES,
                    st.sampled_from(["CurrentUser", "LocalMachine"]),
                    NAMES,
                    st.sampled_from(["limitedOrElevated", "elevated"]),
                ),
                lambda c: c.name,
            )
        ),
        imports=draw(
            st.lists(
                st.builds(
                    Import, st.sampled_from(["Diagnostics", "RemoteAccess", "RemoteForwarder"])
                ),
                max_size=2,
            ).map(tuple)
        ),
        input_endpoints=draw(_unique(input_endpoint, lambda e: e.name)),
        internal_endpoints=draw(_unique(internal_endpoint, lambda e: e.name, 2)),
        instance_input_endpoints=draw(_unique(instance_input, lambda e: e.name, 2)),
        local_storage=draw(
            _unique(st.builds(LocalStorage, NAMES, INTS, st.booleans()), lambda s: s.name)
        ),
        startup_tasks=draw(
            st.lists(
                st.builds(
                    StartupTask,
                    TEXT,
                    st.sampled_from(list(ExecutionContext)),
                    st.sampled_from(list(TaskType)),
                    envs,
                ),
                max_size=2,
            ).map(tuple)
        ),
        runtime=draw(st.none() | runtime),
        sites=draw(_unique(site, lambda s: s.name, 2)) if kind is RoleKind.WEB else (),
        contents=draw(st.lists(st.builds(Content, NAMES, NAMES), max_size=2).map(tuple)),
    )


@st.composite
def definitions(draw: st.DrawFn) -> ServiceDefinition:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    return ServiceDefinition(
        name=draw(NAMES),
        roles=tuple(draw(roles(n)) for n in names),
        upgrade_domain_count=draw(INTS),
        topology_change_discovery=draw(st.none() | st.sampled_from(["Blast", "UpgradeDomainWalk"])),
        schema_version=draw(st.none() | NAMES),
        load_balancer_probes=draw(
            _unique(
                st.builds(
                    LoadBalancerProbe,
                    NAMES,
                    st.sampled_from(list(ProbeProtocol)),
                    st.none() | TEXT,
                    st.none() | INTS,
                    INTS,
                    INTS,
                ),
                lambda p: p.name,
            )
        ),
        network_traffic_rules=draw(
            st.lists(
                st.one_of(
                    st.builds(
                        TrafficRule,
                        st.lists(st.builds(RoleEndpointRef, NAMES, NAMES), max_size=2).map(tuple),
                        st.just(True),
                    ),
                    st.builds(
                        TrafficRule,
                        st.lists(st.builds(RoleEndpointRef, NAMES, NAMES), max_size=2).map(tuple),
                        st.just(False),
                        st.lists(NAMES, max_size=2).map(tuple),
                    ),
                ),
                max_size=2,
            ).map(tuple)
        ),
    )


network = st.builds(
    NetworkConfiguration,
    _unique(
        st.builds(
            AccessControl,
            NAMES,
            st.lists(
                st.builds(
                    AclRule, INTS, st.sampled_from(["permit", "deny"]), TEXT, st.none() | ANY_TEXT
                ),
                max_size=2,
            ).map(tuple),
        ),
        lambda a: a.name,
    ),
    st.lists(st.builds(EndpointAcl, NAMES, NAMES, NAMES), max_size=2).map(tuple),
    st.lists(st.builds(DnsServer, NAMES, TEXT), max_size=2).map(tuple),
    st.none() | NAMES,
    st.lists(
        st.builds(
            InstanceAddress,
            NAMES,
            st.lists(NAMES, max_size=2).map(tuple),
            st.lists(NAMES, max_size=2).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
    st.lists(NAMES, max_size=2).map(tuple),
    st.lists(
        st.builds(
            LoadBalancerConfig,
            NAMES,
            st.none()
            | st.builds(FrontendIPConfiguration, NAMES, st.none() | NAMES, st.none() | NAMES),
        ),
        max_size=2,
    ).map(tuple),
)
configurations = st.builds(
    ServiceConfiguration,
    service_name=NAMES,
    roles=_unique(
        st.builds(
            RoleConfiguration,
            NAMES,
            INTS,
            _unique(st.builds(SettingValue, NAMES, ANY_TEXT), lambda s: s.name),
            _unique(
                st.builds(
                    CertificateThumbprint,
                    NAMES,
                    st.from_regex(r"[0-9A-F]{40}", fullmatch=True),
                    st.sampled_from(["sha1", "sha256"]),
                ),
                lambda c: c.name,
            ),
            st.none() | NAMES,
        ),
        lambda r: r.name,
    ),
    os_family=st.none() | st.sampled_from(["4", "5", "6"]),
    os_version=st.none() | st.just("*"),
    schema_version=st.none() | NAMES,
    network=st.none() | network,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(definitions())
def test_definition_round_trip(sd: ServiceDefinition) -> None:
    back, problems = read_definition(definition_to_xml(sd))
    assert problems == []
    assert back == sd


@SETTINGS
@given(configurations)
def test_configuration_round_trip(sc: ServiceConfiguration) -> None:
    back, problems = read_configuration(configuration_to_xml(sc))
    assert problems == []
    assert back == sc


@FEWER
@given(definitions(), configurations)
def test_validate_is_total_and_diff_of_self_is_empty(
    sd: ServiceDefinition, sc: ServiceConfiguration
) -> None:
    problems = validate(sd, sc)
    assert all(p.message.endswith((".", "?")) for p in problems)
    service = Service(sd, sc)
    assert not diff(service, service)
    assert diff(service, service).changes == ()


def _endpoint_mutations(role: Role) -> list[Role]:
    out = [
        replace(
            role,
            input_endpoints=(
                *role.input_endpoints,
                InputEndpoint("Zz9", EndpointProtocol.TCP, 1, 1),
            ),
        )
    ]
    out.append(
        replace(
            role,
            internal_endpoints=(
                *role.internal_endpoints,
                InternalEndpoint("Zz8", EndpointProtocol.ANY),
            ),
        )
    )
    if role.input_endpoints:
        first = role.input_endpoints[0]
        other = (
            EndpointProtocol.UDP
            if first.protocol is not EndpointProtocol.UDP
            else EndpointProtocol.TCP
        )
        out.append(replace(role, input_endpoints=role.input_endpoints[1:]))
        out.append(
            replace(
                role, input_endpoints=(replace(first, protocol=other), *role.input_endpoints[1:])
            )
        )
    if role.instance_input_endpoints:
        first_ii = role.instance_input_endpoints[0]
        other = (
            EndpointProtocol.UDP
            if first_ii.protocol is EndpointProtocol.TCP
            else EndpointProtocol.TCP
        )
        out.append(
            replace(
                role,
                instance_input_endpoints=(
                    replace(first_ii, protocol=other),
                    *role.instance_input_endpoints[1:],
                ),
            )
        )
    return out


@FEWER
@given(definitions(), configurations, st.data())
def test_endpoint_number_or_type_change_never_allows_vip_swap(
    sd: ServiceDefinition, sc: ServiceConfiguration, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(sd.roles) - 1))
    mutated = data.draw(st.sampled_from(_endpoint_mutations(sd.roles[index])))
    roles = (*sd.roles[:index], mutated, *sd.roles[index + 1 :])
    old, new = Service(sd, sc), Service(replace(sd, roles=roles), sc)
    assert not diff(old, new).allows_vip_swap
    assert not diff(new, old).allows_vip_swap
