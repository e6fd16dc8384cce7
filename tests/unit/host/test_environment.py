"""The environment of a role process: platform variables and resolved RoleInstanceValue xpaths."""

from __future__ import annotations

import pytest

from cumulo.host.environment import (
    InstancePaths,
    Placement,
    platform_variables,
    resolve_variables,
    snapshot,
    xpath_context,
)
from cumulo.model.xpaths import XPathError
from cumulo.state.spec import EndpointSpec, EnvVarSpec, InstanceSpec, LocalResourceSpec

SPEC = InstanceSpec(
    "dep1",
    "svc",
    "staging",
    "Web",
    "web",
    "Web_IN_1",
    "/pkg/Web",
    update_domain=1,
    fault_domain=0,
    endpoints=(
        EndpointSpec("Http-In", "input", "http", 80, "*"),
        EndpointSpec("Peer", "internal", "tcp", None, 9000),
    ),
    local_resources=(LocalResourceSpec("Cache", 20),),
    settings=(("Greeting", "hi"),),
)
PLACEMENT = Placement("127.1.0.7", {"Http-In": 41000, "Peer": 9000})
PATHS = InstancePaths(
    "/d/i", "/d/i/approot", "/d/i/temp", "/d/i/logs", "/d/s.sock", {"Cache": "/d/i/local/Cache"}
)


def test_xpaths_resolve_against_the_instance() -> None:
    ctx = xpath_context(SPEC, PLACEMENT, PATHS, SPEC.settings_dict())
    base = "/RoleEnvironment/CurrentInstance"
    variables = (
        EnvVarSpec("A", value="literal"),
        EnvVarSpec("ID", xpath=f"{base}/@id"),
        EnvVarSpec("UD", xpath=f"{base}/@updateDomain"),
        EnvVarSpec("DEP", xpath="/RoleEnvironment/Deployment/@id"),
        EnvVarSpec("EMU", xpath="/RoleEnvironment/Deployment/@emulated"),
        EnvVarSpec(
            "G", xpath=f"{base}/ConfigurationSettings/ConfigurationSetting[@name='Greeting']/@value"
        ),
        EnvVarSpec("P", xpath=f"{base}/LocalResources/LocalResource[@name='Cache']/@path"),
        EnvVarSpec("SZ", xpath=f'{base}/LocalResources/LocalResource[@name="Cache"]/@sizeInMB'),
        EnvVarSpec("PORT", xpath=f"{base}/Endpoints/Endpoint[@name='Http-In']/@port"),
        EnvVarSpec("ADDR", xpath=f"{base}/Endpoints/Endpoint[@name='Http-In']/@address"),
    )
    assert resolve_variables(variables, ctx) == {
        "A": "literal",
        "ID": "Web_IN_1",
        "UD": "1",
        "DEP": "dep1",
        "EMU": "false",
        "G": "hi",
        "P": "/d/i/local/Cache",
        "SZ": "20",
        "PORT": "41000",
        "ADDR": "127.1.0.7",
    }


def test_unknown_names_are_a_sentence() -> None:
    ctx = xpath_context(SPEC, PLACEMENT, PATHS, {})
    xp = "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='Nope']/@port"
    with pytest.raises(XPathError):
        resolve_variables((EnvVarSpec("X", xpath=xp),), ctx)


def test_platform_variables() -> None:
    env = platform_variables(
        SPEC, PLACEMENT, PATHS, runtime_path="/d/rt", interpreter="/usr/bin/python3"
    )
    assert env["CUMULO_ENDPOINT_HTTP_IN_PORT"] == "41000"
    assert env["CUMULO_ENDPOINT_PEER_ADDRESS"] == "127.1.0.7"
    assert env["CUMULO_LOCAL_RESOURCE_CACHE"] == "/d/i/local/Cache"
    assert env["CUMULO_SLOT"] == "staging" and env["RoleInstanceID"] == "Web_IN_1"
    assert env["PYTHONPATH"] == "/d/rt:/d/i/approot"
    assert env["TMPDIR"] == "/d/i/temp" and env["PATH"].startswith("/usr/bin:")


def test_snapshot_shows_peers_only_through_internal_endpoints() -> None:
    topology = {
        "Web": [
            {
                "id": "Web_IN_0",
                "role": "Web",
                "update_domain": 0,
                "fault_domain": 0,
                "endpoints": {"Peer": {"protocol": "tcp", "address": "127.1.0.6", "port": 9000}},
            },
        ],
        "Worker": [
            {
                "id": "Worker_IN_0",
                "role": "Worker",
                "update_domain": 0,
                "fault_domain": 0,
                "endpoints": {},
            },
        ],
    }
    snap = snapshot(SPEC, PLACEMENT, PATHS, {"Greeting": "hi"}, topology)
    assert [i["id"] for i in snap["roles"]["Web"]] == ["Web_IN_0", "Web_IN_1"]
    assert "Worker" not in snap["roles"]
    assert snap["current"]["endpoints"]["Http-In"] == {
        "protocol": "http",
        "address": "127.1.0.7",
        "port": 41000,
        "public_port": 80,
    }
    assert snap["local_resources"] == {"Cache": {"path": "/d/i/local/Cache", "size_mb": 20}}
