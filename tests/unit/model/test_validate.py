"""Validation beyond the corpus: limits and their override, layout of the service directory."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cumulo.errors import ModelError
from cumulo.model import NO_LIMITS, Limits, load_service, validate
from cumulo.model.definition import (
    EndpointProtocol,
    InputEndpoint,
    Role,
    RoleKind,
    ServiceDefinition,
)

SERVICES = Path(__file__).resolve().parents[2] / "fixtures" / "services"


def _roles(n: int) -> ServiceDefinition:
    return ServiceDefinition("big", tuple(Role(f"R{i}", RoleKind.WORKER) for i in range(n)))


def test_role_limit_and_override() -> None:
    problems = validate(_roles(26))
    assert [p.message for p in problems] == [
        "ServiceDefinition 'big' defines 26 roles; Azure allows at most 25 (see --skip-limits)."
    ]
    assert validate(_roles(26), limits=NO_LIMITS) == []
    assert validate(_roles(25)) == []


def test_input_endpoint_limit() -> None:
    eps = tuple(InputEndpoint(f"E{i}", EndpointProtocol.TCP, 1000 + i, 1000 + i) for i in range(26))
    sd = ServiceDefinition("s", (Role("R", RoleKind.WORKER, input_endpoints=eps),))
    assert any("26 input endpoints" in p.message for p in validate(sd))
    assert validate(sd, limits=Limits(max_input_endpoints=30)) == []


def test_no_roles() -> None:
    (p,) = validate(ServiceDefinition("s", ()))
    assert p.message.startswith("ServiceDefinition 's' defines no role")


def test_missing_role_folder(tmp_path: Path) -> None:
    shutil.copytree(SERVICES / "multi-role", tmp_path / "svc")
    shutil.rmtree(tmp_path / "svc" / "Cron")
    with pytest.raises(ModelError) as info:
        load_service(tmp_path / "svc")
    (problem,) = info.value.problems
    assert problem.line == 40
    assert problem.message == (
        "WorkerRole 'Cron' has no folder 'Cron' next to ServiceDefinition.csdef; put the role's "
        "files there."
    )


def test_missing_content_directory(tmp_path: Path) -> None:
    shutil.copytree(SERVICES / "multi-role", tmp_path / "svc")
    shutil.rmtree(tmp_path / "svc" / "shared")
    with pytest.raises(ModelError) as info:
        load_service(tmp_path / "svc")
    assert len(info.value.problems) == 2
    assert "refers to directory 'shared', which does not exist" in str(info.value)


def test_explicit_config_and_csdef_path(tmp_path: Path) -> None:
    svc = SERVICES / "python-web"
    s = load_service(svc / "ServiceDefinition.csdef", svc / "ServiceConfiguration.Cloud.cscfg")
    assert s.root == svc


def test_duplicate_roles() -> None:
    sd = ServiceDefinition("s", (Role("A", RoleKind.WORKER), Role("A", RoleKind.WEB)))
    (p,) = validate(sd)
    assert p.message == "WebRole 'A' is defined twice; role names must be unique."


def test_settings_duplicates_in_cscfg() -> None:
    s = load_service(SERVICES / "node-worker")
    rc = s.configuration.roles[0]
    rc2 = replace(rc, settings=rc.settings + rc.settings)
    problems = validate(s.definition, replace(s.configuration, roles=(rc2,)))
    assert [p.message for p in problems] == [
        "Setting 'QueueName' of Role 'NodeWorker' is given twice."
    ]
