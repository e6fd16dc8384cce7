"""The management API in-process over a real SQLite store: services, packages, deployments,
operations, ETags, problem+json, token auth and the OpenAPI document."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx

from cumulo.api.app import ENDPOINTS
from cumulo.api.auth import ensure_token
from cumulo.package.build import build_package

from .conftest import CSDEF, cscfg  # type: ignore[import-not-found]


def _deploy(api: httpx.Client, package: bytes, slot: str = "staging", **extra: object) -> dict:
    assert api.post("/v1/services", json={"name": "tiny"}).status_code in (201, 409)
    digest = api.post("/v1/packages", content=package).json()["digest"]
    r = api.post(
        f"/v1/services/tiny/deploymentslots/{slot}",
        json={"package": digest, "configuration": cscfg(), **extra},
    )
    assert r.status_code == 202, r.text
    return r.json()


def test_the_token_file_is_private_and_stable(data_dir: Path) -> None:
    token = ensure_token(data_dir)
    path = data_dir / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_token(data_dir) == token and len(token) >= 40


def test_requests_without_the_token_are_refused(api: httpx.Client) -> None:
    r = api.get("/v1/services", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "AuthenticationFailed"
    assert api.get("/v1/services", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/v1/health", headers={"Authorization": ""}).status_code == 200
    assert api.get("/openapi.json", headers={"Authorization": ""}).status_code == 200


def test_the_openapi_document_lists_every_route(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    ids = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert ids == {e.operation_id for e in ENDPOINTS}


def test_services_create_list_get_delete(api: httpx.Client) -> None:
    r = api.post("/v1/services", json={"name": "shop", "label": "Shop"})
    assert r.status_code == 201 and r.headers["location"] == "/v1/services/shop"
    again = api.post("/v1/services", json={"name": "shop"})
    assert again.status_code == 409 and again.json()["code"] == "Conflict"
    bad = api.post("/v1/services", json={"name": "no spaces"})
    assert bad.status_code == 400 and "is not valid" in bad.json()["detail"]
    assert [s["name"] for s in api.get("/v1/services").json()["services"]] == ["shop"]
    assert api.get("/v1/services/shop").json()["deployments"] == []
    assert api.delete("/v1/services/shop").status_code == 204
    missing = api.get("/v1/services/shop")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_a_bad_body_is_a_sentence(api: httpx.Client) -> None:
    r = api.post("/v1/services", content=b"{nope")
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    r = api.post("/v1/services", json={"name": 3})
    assert r.status_code == 400 and r.json()["detail"] == "Field 'name' is 3; it must be a str."


def test_packages_are_content_addressed_and_checked(api: httpx.Client, package: bytes) -> None:
    r = api.post("/v1/packages", content=package)
    assert r.status_code == 201
    digest = r.json()["digest"]
    assert api.post("/v1/packages", content=package).json()["digest"] == digest
    assert api.get(f"/v1/packages/{digest}").json()["size"] == len(package)
    bad = api.post("/v1/packages", content=b"not a zip")
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidPackage"


def test_create_and_get_a_deployment(api: httpx.Client, package: bytes) -> None:
    op = _deploy(api, package)
    assert op["status"] == "InProgress" and op["kind"] == "CreateDeployment"
    assert api.get(f"/v1/operations/{op['id']}").json()["status"] == "InProgress"
    r = api.get("/v1/services/tiny/deploymentslots/staging")
    assert r.status_code == 200
    view = r.json()
    assert r.headers["etag"] == view["etag"]
    assert view["slot"] == "staging" and view["status"] == "RunningTransitioning"
    assert view["locked"] is True and view["operation"] == op["id"]
    assert [(i["id"], i["update_domain"], i["status"]) for i in view["instances"]] == [
        ("Worker_IN_0", 0, "RoleStateUnknown"),
        ("Worker_IN_1", 1, "RoleStateUnknown"),
    ]
    assert view["upgrade"] is None and view["rollback_allowed"] is False
    taken = api.post(
        "/v1/services/tiny/deploymentslots/staging",
        json={"package": view["package"], "configuration": cscfg()},
    )
    assert taken.status_code == 409 and "already holds" in taken.json()["detail"]


def test_a_second_mutation_while_one_runs_is_refused_with_409(
    api: httpx.Client, package: bytes
) -> None:
    op = _deploy(api, package)
    r = api.post("/v1/services/tiny/deploymentslots/staging/status", json={"status": "Suspended"})
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "OperationInProgress" and body["operation"] == op["id"]


def test_if_match_guards_deployment_writes(api: httpx.Client, package: bytes, management) -> None:
    op = _deploy(api, package)
    management.store.finish_operation(op["id"], _succeeded())
    etag = api.get("/v1/services/tiny/deploymentslots/staging").headers["etag"]
    stale = api.post(
        "/v1/services/tiny/deploymentslots/staging/status",
        json={"status": "Suspended"},
        headers={"If-Match": '"x.1"'},
    )
    assert stale.status_code == 412 and stale.json()["code"] == "PreconditionFailed"
    ok = api.post(
        "/v1/services/tiny/deploymentslots/staging/status",
        json={"status": "Suspended"},
        headers={"If-Match": etag},
    )
    assert ok.status_code == 202
    assert api.get("/v1/services/tiny/deploymentslots/staging").headers["etag"] != etag


def test_a_model_error_lists_every_problem(api: httpx.Client, package: bytes) -> None:
    api.post("/v1/services", json={"name": "tiny"})
    digest = api.post("/v1/packages", content=package).json()["digest"]
    r = api.post(
        "/v1/services/tiny/deploymentslots/production",
        json={"package": digest, "configuration": cscfg().replace('count="2"', 'count="zero"')},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "InvalidServiceModel" and body["problems"]
    assert {"file": "ServiceConfiguration.cscfg", "line": 4} in [
        {"file": p["file"], "line": p["line"]} for p in body["problems"]
    ]


def test_swap_is_refused_until_every_instance_runs(
    api: httpx.Client, package: bytes, management
) -> None:
    op = _deploy(api, package)
    management.store.finish_operation(op["id"], _succeeded())
    r = api.post("/v1/services/tiny/swap")
    assert r.status_code == 409 and r.json()["code"] == "SwapNotAllowed"
    assert "not Ready: Worker_IN_0, Worker_IN_1" in r.json()["detail"]


def test_delete_service_is_refused_while_deployments_exist(
    api: httpx.Client, package: bytes
) -> None:
    _deploy(api, package)
    r = api.delete("/v1/services/tiny")
    assert r.status_code == 409 and "staging" in r.json()["detail"]


def test_events_record_operations(api: httpx.Client, package: bytes) -> None:
    op = _deploy(api, package)
    events = api.get("/v1/services/tiny/events").json()["events"]
    assert [e["name"] for e in events] == ["service.created", "operation.started"]
    assert events[1]["fields"] == {"kind": "CreateDeployment", "operation": op["id"]}
    later = api.get(f"/v1/services/tiny/events?after={events[0]['seq']}").json()["events"]
    assert len(later) == 1


def _succeeded():
    from cumulo.storage.store import OperationStatus

    return OperationStatus.SUCCEEDED


def test_upgrade_plan_changes_nothing(
    api: httpx.Client, package: bytes, package2: bytes, management
) -> None:
    op = _deploy(api, package, slot="production")
    management.store.finish_operation(op["id"], _succeeded())
    before = api.get("/v1/services/tiny/deploymentslots/production").headers["etag"]
    digest2 = api.post("/v1/packages", content=package2).json()["digest"]
    r = api.post(
        "/v1/services/tiny/deploymentslots/production/upgrade",
        json={"package": digest2, "plan": True},
    )
    assert r.status_code == 200, r.text
    plan = r.json()
    assert any("Worker" in line and "recycle" in line for line in plan["changes"]), plan
    assert [d["recycle"] for d in plan["domains"]] == [["Worker_IN_0"], ["Worker_IN_1"]]
    assert api.get("/v1/services/tiny/deploymentslots/production").headers["etag"] == before


def _package_with(tmp_path: Path, name: str, csdef: str) -> bytes:
    src = tmp_path / name
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(csdef)
    (src / "ServiceConfiguration.cscfg").write_text(cscfg())
    (src / "Worker" / "worker.py").write_text("print('v')\n")
    out = tmp_path / f"{name}.cspkg"
    build_package(src, out)
    return out.read_bytes()


LOCAL = """    <LocalResources>
      <LocalStorage name="Cache" sizeInMB="SIZE" />
    </LocalResources>
  </WorkerRole>"""


def test_upgrade_needs_force_for_a_vmsize_change_and_refuses_a_new_deployment_change(
    api: httpx.Client, management, tmp_path: Path
) -> None:
    def upload(name: str, csdef: str) -> str:
        return api.post("/v1/packages", content=_package_with(tmp_path, name, csdef)).json()[
            "digest"
        ]

    with_cache = CSDEF.replace("  </WorkerRole>", LOCAL.replace("SIZE", "200"))
    op = _deploy(api, _package_with(tmp_path, "base", with_cache), slot="production")
    management.store.finish_operation(op["id"], _succeeded())
    url = "/v1/services/tiny/deploymentslots/production/upgrade"

    smaller = upload("small", CSDEF.replace("  </WorkerRole>", LOCAL.replace("SIZE", "100")))
    r = api.post(url, json={"package": smaller, "force": True})
    assert r.status_code == 400, r.text
    assert "cannot be applied in place" in r.json()["detail"]
    assert "LocalStorage 'Cache' shrinks from 200 to 100" in r.json()["detail"]

    bigger = upload("big", with_cache.replace('vmsize="Small"', 'vmsize="Large"'))
    r = api.post(url, json={"package": bigger})
    assert r.status_code == 400, r.text
    assert "needs --force" in r.json()["detail"]
    assert "vmsize changes from Small to Large" in r.json()["detail"]
    r = api.post(url, json={"package": bigger, "force": True})
    assert r.status_code == 202, r.text
