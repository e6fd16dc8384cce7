"""The guestbook's pieces agree: the two roles on storage names and messages, the service
model on what the README promises, and the connection string comes from the right place."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import webstore
import worker
from hypothesis import given
from hypothesis import strategies as st

from cumulo.model import RoleKind, load_service

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "guestbook"


def test_both_roles_use_the_same_names() -> None:
    for name in ("SETTING", "TABLE", "PICTURES", "THUMBNAILS", "QUEUE", "ENV_VARS",
                 "DEFAULT_CONNECTION_STRING", "RETRY_TOTAL", "RETRY_BACKOFF"):  # fmt: skip
        assert getattr(webstore, name) == getattr(worker, name), name


def test_the_worker_reads_what_the_web_role_sends() -> None:
    message = json.dumps({"pk": "2026-11-25", "rk": "8204367039478898786-37f6a396099e"})
    assert worker.parse_request(message) == ("2026-11-25", "8204367039478898786-37f6a396099e")


@given(st.text(max_size=80))
def test_any_message_text_is_a_request_or_none(text: str) -> None:
    keys = worker.parse_request(text)
    assert keys is None or all(isinstance(k, str) and k for k in keys)


@pytest.mark.parametrize(
    "text", ["", "null", "[]", '{"pk": 1, "rk": "x"}', '{"pk": "a/b", "rk": "x"}', '{"pk": "a"}']
)
def test_malformed_requests_are_none(text: str) -> None:
    assert worker.parse_request(text) is None


@pytest.mark.parametrize(
    "cscfg", ["ServiceConfiguration.Local.cscfg", "ServiceConfiguration.Cloud.cscfg"]
)
def test_the_service_model_is_what_the_readme_says(cscfg: str) -> None:
    service = load_service(EXAMPLE, EXAMPLE / cscfg)
    web, work = service.definition.roles
    assert (web.name, web.kind, work.name, work.kind) == (
        "WebRole",
        RoleKind.WEB,
        "WorkerRole",
        RoleKind.WORKER,
    )
    for role in service.configuration.roles:
        assert role.instances == 2
        assert {s.name: s.value for s in role.settings} == {
            "StorageConnectionString": "UseDevelopmentStorage=true"
        }
    [endpoint] = web.input_endpoints
    assert (endpoint.port, endpoint.local_port, endpoint.load_balancer_probe) == (
        80,
        8080,
        "Health",
    )
    [probe] = service.definition.load_balancer_probes
    assert probe.path == "/health"
    [site] = service.site_apps
    assert (site.handler.module, site.handler.attribute) == ("app", "application")
    assert work.runtime is not None and work.runtime.entry_point is not None
    assert work.runtime.entry_point.command_line == "python -m cumulo.sdk.run worker:Worker"


@pytest.mark.parametrize(
    ("role", "packages"),
    [
        ("WebRole", {"azure-data-tables", "azure-storage-blob", "azure-storage-queue"}),
        (
            "WorkerRole",
            {"azure-data-tables", "azure-storage-blob", "azure-storage-queue", "pillow"},
        ),
    ],
)
def test_requirements_are_pinned(role: str, packages: set[str]) -> None:
    lines = [
        line.strip()
        for line in (EXAMPLE / role / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {re.split("==", line)[0].lower() for line in lines} == packages
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9.]+", line) for line in lines), lines


@pytest.mark.parametrize("module", [webstore, worker])
def test_connection_string_outside_cumulo(module, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for var in (*module.ENV_VARS, "CUMULO_AGENT_SOCKET"):
        monkeypatch.delenv(var, raising=False)
    assert module.connection_string() == "UseDevelopmentStorage=true"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "B")
    assert module.connection_string() == "B"
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", "A")
    assert module.connection_string() == "A"
