"""diff(old, new): the classification of reference §4.3."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cumulo.model import Service, load_service
from cumulo.model.definition import EndpointProtocol, InputEndpoint, LocalStorage
from cumulo.model.diff import Impact, diff

SERVICES = Path(__file__).resolve().parents[2] / "fixtures" / "services"
BASE = load_service(SERVICES / "python-web")


def _with_role(service: Service, **changes: object) -> Service:
    role = replace(service.definition.roles[0], **changes)  # type: ignore[arg-type]
    return replace(service, definition=replace(service.definition, roles=(role,)))


def _with_role_config(service: Service, **changes: object) -> Service:
    rc = replace(service.configuration.roles[0], **changes)  # type: ignore[arg-type]
    return replace(service, configuration=replace(service.configuration, roles=(rc,)))


def test_no_change() -> None:
    d = diff(BASE, BASE)
    assert not d and d.impact is None and d.allows_vip_swap and d.allows_in_place


def test_instance_count_is_in_place() -> None:
    d = diff(BASE, _with_role_config(BASE, instances=5))
    assert d.impact is Impact.IN_PLACE and d.recycle_roles == ()
    assert d.explain() == ["[in-place] role 'WebRole' instances change from 3 to 5"]


def test_setting_value_is_in_place() -> None:
    settings = tuple(
        replace(s, value="bye") if s.name == "Greeting" else s
        for s in BASE.configuration.roles[0].settings
    )
    d = diff(BASE, _with_role_config(BASE, settings=settings))
    assert d.impact is Impact.IN_PLACE
    assert "settings change: Greeting" in d.changes[0].description


def test_vmsize_recycles_the_role() -> None:
    d = diff(BASE, _with_role(BASE, vmsize="Large"))
    assert d.impact is Impact.RECYCLE and d.recycle_roles == ("WebRole",)
    assert d.allows_vip_swap


def test_certificate_thumbprint_recycles() -> None:
    certs = tuple(
        replace(c, thumbprint="AA" * 20) for c in BASE.configuration.roles[0].certificates
    )
    d = diff(BASE, _with_role_config(BASE, certificates=certs))
    assert d.impact is Impact.RECYCLE and d.recycle_roles == ("WebRole",)


def test_os_change_recycles_every_role() -> None:
    new = replace(BASE, configuration=replace(BASE.configuration, os_family="7"))
    assert diff(BASE, new).recycle_roles == ("WebRole",)


def test_local_storage_grow_and_shrink() -> None:
    cache, scratch = BASE.definition.roles[0].local_storage
    grown = _with_role(BASE, local_storage=(replace(cache, size_mb=1024), scratch))
    shrunk = _with_role(BASE, local_storage=(replace(cache, size_mb=10), scratch))
    assert diff(BASE, grown).impact is Impact.RECYCLE
    d = diff(BASE, shrunk)
    assert d.impact is Impact.NEW_DEPLOYMENT and not d.allows_in_place


def test_upgrade_domain_count_needs_new_deployment() -> None:
    new = replace(BASE, definition=replace(BASE.definition, upgrade_domain_count=7))
    assert diff(BASE, new).impact is Impact.NEW_DEPLOYMENT


def test_adding_an_endpoint_forbids_vip_swap() -> None:
    extra = InputEndpoint("Extra", EndpointProtocol.TCP, 9000, 9000)
    eps = (*BASE.definition.roles[0].input_endpoints, extra)
    d = diff(BASE, _with_role(BASE, input_endpoints=eps))
    assert d.impact is Impact.RECYCLE and not d.allows_vip_swap
    assert d.explain()[0].endswith("; no VIP swap")


def test_changing_endpoint_type_forbids_vip_swap() -> None:
    http, https = BASE.definition.roles[0].input_endpoints
    d = diff(
        BASE,
        _with_role(BASE, input_endpoints=(replace(http, protocol=EndpointProtocol.TCP), https)),
    )
    assert not d.allows_vip_swap


def test_changing_local_port_keeps_vip_swap() -> None:
    http, https = BASE.definition.roles[0].input_endpoints
    d = diff(BASE, _with_role(BASE, input_endpoints=(replace(http, local_port=8080), https)))
    assert d.impact is Impact.RECYCLE and d.allows_vip_swap


def test_startup_task_change_recycles() -> None:
    tasks = BASE.definition.roles[0].startup_tasks[:1]
    assert diff(BASE, _with_role(BASE, startup_tasks=tasks)).recycle_roles == ("WebRole",)


def test_code_change_recycles_only_named_roles() -> None:
    d = diff(BASE, BASE, code_changed=["WebRole"])
    assert d.recycle_roles == ("WebRole",)


def test_adding_a_role_is_in_place() -> None:
    multi = load_service(SERVICES / "multi-role")
    cron = multi.definition.role("Cron")
    assert cron is not None
    new = replace(
        multi,
        definition=replace(multi.definition, roles=multi.definition.roles[:2]),
        configuration=replace(multi.configuration, roles=multi.configuration.roles[:2]),
    )
    d = diff(new, multi)
    assert d.impact is Impact.IN_PLACE and d.allows_vip_swap  # Cron has no endpoints
    assert [c.description for c in d.changes] == ["role 'Cron' is added"]


def test_local_storage_added_recycles() -> None:
    extra = LocalStorage("More", 10)
    ls = (*BASE.definition.roles[0].local_storage, extra)
    assert diff(BASE, _with_role(BASE, local_storage=ls)).impact is Impact.RECYCLE
