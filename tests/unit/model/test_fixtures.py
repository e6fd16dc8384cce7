"""The sample services in tests/fixtures/services load, and every element lands in the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.model import deploy_blockers, load_service
from cumulo.model.definition import (
    AppInterface,
    EndpointProtocol,
    ExecutionContext,
    NetFxEntryPoint,
    ProbeProtocol,
    ProgramEntryPoint,
    RoleKind,
    TaskType,
)

SERVICES = Path(__file__).resolve().parents[2] / "fixtures" / "services"


@pytest.mark.parametrize("name", sorted(p.name for p in SERVICES.iterdir() if p.is_dir()))
def test_every_fixture_is_valid(name: str) -> None:
    service = load_service(SERVICES / name)
    assert service.definition.roles
    assert service.configuration.service_name == service.definition.name


def test_at_least_six_fixtures() -> None:
    assert len([p for p in SERVICES.iterdir() if p.is_dir()]) >= 6


def test_python_web_role() -> None:
    s = load_service(SERVICES / "python-web")
    sd = s.definition
    assert s.configuration_file == "ServiceConfiguration.Cloud.cscfg"
    assert sd.upgrade_domain_count == 4 and sd.schema_version == "2015-04.2.6"
    web = sd.roles[0]
    assert web.kind is RoleKind.WEB and web.vmsize == "Medium"
    assert web.enable_native_code_execution is True
    assert [i.module_name for i in web.imports] == [
        "Diagnostics",
        "RemoteAccess",
        "RemoteForwarder",
    ]
    http, https = web.input_endpoints
    assert (http.port, http.local_port, http.load_balancer_probe) == (80, 80, "Health")
    assert (https.protocol, https.local_port, https.certificate) == (
        EndpointProtocol.HTTPS,
        8443,
        "SslCert",
    )
    assert https.idle_timeout_minutes == 4 and https.ignore_role_instance_status is False
    cache, scratch = web.local_storage
    assert (cache.size_mb, cache.clean_on_role_recycle) == (512, False)
    assert (scratch.size_mb, scratch.clean_on_role_recycle) == (100, True)
    t1, t2, t3 = web.startup_tasks
    assert (t1.execution_context, t1.task_type) == (ExecutionContext.ELEVATED, TaskType.SIMPLE)
    assert (t2.execution_context, t2.task_type) == (ExecutionContext.LIMITED, TaskType.BACKGROUND)
    assert t3.task_type is TaskType.FOREGROUND
    assert t1.environment[0].xpath and t1.environment[1].value == "prepare"
    signing = web.certificates[1]
    assert (signing.store_location, signing.store_name, signing.permission_level) == (
        "CurrentUser",
        "TrustedPeople",
        "elevated",
    )
    site = web.sites[0]
    assert [b.host_header for b in site.bindings] == [None, "www.example.test"]
    api = site.virtual_applications[0]
    assert api.app is not None and api.app.interface is AppInterface.ASGI
    assert api.virtual_directories[0].name == "docs"
    assert site.virtual_directories[0].physical_directory == "WebRole/static"
    probe = sd.load_balancer_probes[0]
    assert (probe.protocol, probe.path, probe.interval_seconds, probe.timeout_seconds) == (
        ProbeProtocol.HTTP,
        "/health",
        5,
        11,
    )
    root_app, api_app = s.site_apps
    assert (root_app.source, str(root_app.handler), root_app.handler.call) == (
        "web.config",
        "site_app:make_app()",
        True,
    )
    assert root_app.python_path == "D:\\home\\site\\wwwroot"
    assert (api_app.path, api_app.interface, api_app.directory) == (
        "/api",
        AppInterface.ASGI,
        "WebRole/api",
    )
    rc = s.configuration.roles[0]
    assert rc.vm_name == "pyweb" and rc.instances == 3
    assert rc.setting_values["Greeting"] == "Hello from the cloud"
    assert rc.certificate("SslCert") is not None
    assert s.configuration.os_family == "6" and s.configuration.os_version == "*"


def test_node_worker_role() -> None:
    s = load_service(SERVICES / "node-worker")
    role = s.definition.roles[0]
    assert role.kind is RoleKind.WORKER and role.vmsize == "Standard_D1_v2"
    assert role.runtime is not None
    assert role.runtime.execution_context is ExecutionContext.ELEVATED
    assert role.runtime.entry_point == ProgramEntryPoint("node server.js", True)
    assert role.input_endpoints[0].local_port is None  # localPort="*"
    gossip = role.internal_endpoints[0]
    assert gossip.fixed_port == 7946 and gossip.fixed_port_range is None
    debug = role.instance_input_endpoints[0]
    assert (debug.local_port, debug.public_ports.min, debug.public_ports.max) == (
        9229,
        10100,
        10104,
    )
    assert s.definition.load_balancer_probes[0].protocol is ProbeProtocol.TCP
    names = [v.name for v in role.runtime.environment]
    assert names[:3] == ["PORT", "ADDRESS", "PROTOCOL"]


def test_multi_role_rules_and_contents() -> None:
    s = load_service(SERVICES / "multi-role")
    sd = s.definition
    assert sd.topology_change_discovery == "Blast" and sd.upgrade_domain_count == 3
    assert sd.role_names == ("Front", "Back", "Cron")
    shards = sd.role("Back").internal_endpoints[0]  # type: ignore[union-attr]
    assert shards.fixed_port_range is not None and shards.fixed_port_range.max == 20010
    rule1, rule2 = sd.network_traffic_rules
    assert rule1.from_roles == ("Front", "Cron") and not rule1.allow_all
    assert rule2.allow_all and rule2.destinations[0].role_name == "Front"
    assert sd.roles[0].contents[0].source_directory == "shared"
    assert s.configuration.total_instances == 6


def test_network_configuration() -> None:
    s = load_service(SERVICES / "network-config")
    net = s.configuration.network
    assert net is not None
    assert [r.order for r in net.access_controls[0].rules] == [100, 200]
    assert net.endpoint_acls[0].access_control == "OfficeOnly"
    assert [d.ip_address for d in net.dns_servers] == ["10.0.0.4", "10.0.0.5"]
    assert net.virtual_network_site == "corpnet"
    assert net.instance_addresses[0].subnets == ("frontend",)
    assert net.instance_addresses[0].public_ips == ("api-ip",)
    assert net.reserved_ips == ("netconf-vip",)
    lb = net.load_balancers[0]
    assert lb.frontend is not None and lb.frontend.static_ip_address == "10.0.1.10"
    public, private, metrics = s.definition.roles[0].input_endpoints
    assert public.idle_timeout_minutes == 15 and public.ignore_role_instance_status
    assert public.load_balancer_distribution == "sourceIP"
    assert private.load_balancer == "Inside"
    assert metrics.protocol is EndpointProtocol.UDP


def test_asgi_site_and_legacy_local_storage() -> None:
    s = load_service(SERVICES / "asgi-site")
    role = s.definition.roles[0]
    assert role.local_storage[0].name == "Uploads"
    assert [(a.site, a.interface, a.source) for a in s.site_apps] == [
        ("Main", AppInterface.ASGI, "csdef"),
        ("Wsgi", AppInterface.WSGI, "csdef"),
    ]


def test_netfx_is_recorded_and_blocks_deploy() -> None:
    s = load_service(SERVICES / "netfx-legacy")
    legacy = s.definition.role("Legacy")
    assert legacy is not None and legacy.enable_native_code_execution is False
    assert legacy.runtime is not None
    assert isinstance(legacy.runtime.entry_point, NetFxEntryPoint)
    blockers = [str(p) for p in deploy_blockers(s.definition)]
    assert any("NetFxEntryPoint 'Legacy.dll'" in b for b in blockers)
    assert any("WebRole 'Classic' has no <Sites>" in b for b in blockers)
    assert deploy_blockers(load_service(SERVICES / "python-web").definition) == []
