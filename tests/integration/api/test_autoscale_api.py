"""The autoscale routes of the management API, through the typed client: set (validated, every
problem a sentence), show, list, off; events; and the OpenAPI entries."""

from __future__ import annotations

import httpx
import pytest

from cumulo.client import Client
from cumulo.errors import InputError, NotFoundError

from .conftest import cscfg  # type: ignore[import-not-found]

SETTING = {
    "capacity": {"minimum": 1, "maximum": 4},
    "rules": [
        {
            "metric": "queue",
            "queue": "jobs",
            "dividePerInstance": True,
            "timeWindow": "PT5M",
            "operator": ">",
            "threshold": 20,
            "scaleAction": {"direction": "Increase", "value": 1, "cooldown": "PT5M"},
        },
        {
            "metric": "cpu",
            "timeWindow": 600,
            "operator": "<",
            "threshold": 25,
            "scaleAction": {"direction": "Decrease", "value": 1, "cooldown": "PT10M"},
        },
    ],
}


def deploy(client: Client, package: bytes) -> None:
    client.create_service("tiny")
    digest = client.upload_package(package)["digest"]
    client.create_deployment("tiny", "production", package=digest, configuration=cscfg())


def test_set_show_list_and_off(client: Client, package: bytes) -> None:
    deploy(client, package)
    view = client.set_autoscale("tiny", "Production", "Worker", SETTING)
    assert (view["service"], view["slot"], view["role"]) == ("tiny", "production", "Worker")
    assert view["setting"]["capacity"] == {"minimum": 1, "maximum": 4, "default": 1}
    assert view["setting"]["rules"][1]["timeWindow"] == "PT10M"  # 600 s, written as Azure does
    assert view["setting"]["rules"][0]["operator"] == "GreaterThan"
    assert view["status"] is None  # no autoscaler runs in this API
    assert client.get_autoscale("tiny", "production", "Worker")["setting"] == view["setting"]
    assert [v["role"] for v in client.list_autoscale("tiny")] == ["Worker"]
    client.delete_autoscale("tiny", "production", "Worker")
    assert client.list_autoscale("tiny") == []
    with pytest.raises(NotFoundError, match="has no autoscale setting"):
        client.delete_autoscale("tiny", "production", "Worker")
    names = [e["name"] for e in client.events("tiny")]
    assert names[-2:] == ["autoscale.set", "autoscale.off"]
    (event,) = [e for e in client.events("tiny") if e["name"] == "autoscale.set"]
    assert event["fields"] == {
        "role": "Worker",
        "minimum": 1,
        "maximum": 4,
        "default": 1,
        "rules": 2,
    }


def test_a_bad_setting_is_refused_with_every_problem(client: Client, package: bytes) -> None:
    deploy(client, package)
    bad = {
        "capacity": {"minimum": 3, "maximum": 2},
        "rules": [{**SETTING["rules"][0], "operator": "above", "queue": "Jobs!"}],  # type: ignore[dict-item]
    }
    with pytest.raises(InputError) as info:
        client.set_autoscale("tiny", "production", "Worker", bad)
    assert info.value.code == "InvalidAutoscaleSetting"
    assert info.value.message.splitlines() == [
        "capacity.minimum (3) is above capacity.maximum (2).",
        "rules[0].queue is 'Jobs!'; a queue rule names its queue (3-63 lower-case letters, "
        "digits and single hyphens).",
        "rules[0].operator is 'above'; use one of GreaterThan, GreaterThanOrEqual, LessThan, "
        "LessThanOrEqual, Equals, NotEquals (or >, >=, <, <=, ==, !=).",
    ]
    with pytest.raises(NotFoundError, match="Role 'Web' is not in the production deployment"):
        client.set_autoscale("tiny", "production", "Web", SETTING)
    with pytest.raises(NotFoundError, match="has no deployment in the staging slot"):
        client.set_autoscale("tiny", "staging", "Worker", SETTING)
    with pytest.raises(InputError, match="Slot 'canary' does not exist"):
        client.set_autoscale("tiny", "canary", "Worker", SETTING)


def test_the_openapi_document_has_the_autoscale_routes(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    role = paths["/v1/services/{service}/deploymentslots/{slot}/roles/{role}/autoscale"]
    assert set(role) == {"get", "put", "delete"}
    assert role["put"]["operationId"] == "setAutoscale" and role["put"]["security"]
    assert "get" in paths["/v1/services/{service}/autoscale"]
