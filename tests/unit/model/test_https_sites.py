"""A hosted site serves TLS on its https endpoints: what validation refuses before any instance
starts (a key the limited site could not read, an http probe sent in plain text to the TLS
port), each problem one sentence with the .csdef line."""

from __future__ import annotations

import pytest

from cumulo.errors import ModelError
from cumulo.model.parse import read_definition
from cumulo.model.service import service_from_bytes
from cumulo.model.validate import site_endpoints, validate

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="svc" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model">
  <WebRole name="Web">
    <Sites>
      <Site name="Web" cumulo:wsgiApp="app:app">
        <Bindings>{bindings}</Bindings>
      </Site>
    </Sites>
    <Runtime executionContext="{context}" />
    <Endpoints>
      <InputEndpoint name="Http" protocol="http" port="80" localPort="8080" />
      <InputEndpoint name="Https" protocol="https" port="443" certificate="SSL"{probe} />
    </Endpoints>
    <Certificates>
      <Certificate name="SSL" storeLocation="LocalMachine" storeName="My"{level} />
    </Certificates>
  </WebRole>
  <LoadBalancerProbes>
    <LoadBalancerProbe name="Health" protocol="{protocol}"{path}{port} />
  </LoadBalancerProbes>
</ServiceDefinition>
"""

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="svc" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Web">
    <Instances count="1" />
    <Certificates>
      <Certificate name="SSL" thumbprint="0123456789ABCDEF0123456789ABCDEF01234567"
                   thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
</ServiceConfiguration>
"""

BOTH = '<Binding name="Http" endpointName="Http" /><Binding name="Https" endpointName="Https" />'


def csdef(
    *,
    bindings: str = BOTH,
    context: str = "limited",
    probe: bool = False,
    level: str = "",
    protocol: str = "http",
    port: str = "",
) -> str:
    return (
        CSDEF.replace("{bindings}", bindings)
        .replace("{context}", context)
        .replace("{probe}", ' loadBalancerProbe="Health"' if probe else "")
        .replace("{level}", f' permissionLevel="{level}"' if level else "")
        .replace("{protocol}", protocol)
        .replace("{path}", ' path="/health"' if protocol == "http" else "")
        .replace("{port}", f' port="{port}"' if port else "")
    )


def problems(text: str) -> list[str]:
    sd, syntax = read_definition(text.encode())
    assert sd is not None and not syntax, syntax
    return [str(p) for p in validate(sd)]


def test_an_https_site_with_a_readable_key_and_no_probe_is_valid() -> None:
    assert problems(csdef()) == []
    assert problems(csdef(level="limitedOrElevated")) == []
    service_from_bytes(csdef().encode(), CSCFG.encode())


def test_elevated_key_on_a_limited_site_is_refused_with_the_fix() -> None:
    assert problems(csdef(level="elevated")) == [
        "ServiceDefinition.csdef:13: InputEndpoint 'Https' of role 'Web' is https, served by "
        "the role's site with certificate 'SSL', whose permissionLevel is 'elevated': the site "
        'runs limited and could not read the private key; drop permissionLevel="elevated" '
        'from the certificate or run the role with <Runtime executionContext="elevated">.'
    ]
    assert problems(csdef(level="elevated", context="elevated")) == []
    # not served by the site: the role's program decides how it reads its key
    assert problems(csdef(level="elevated", bindings=BOTH.split("/>")[0] + "/>")) == []


def test_plain_http_probe_on_the_tls_port_is_refused() -> None:
    (message,) = problems(csdef(probe=True))
    assert message == (
        "ServiceDefinition.csdef:13: InputEndpoint 'Https' of role 'Web' is https (the site "
        "serves TLS on it), but its loadBalancerProbe 'Health' is an http probe without a port, "
        'which would send plain HTTP to the TLS port; use protocol="tcp", or give the probe '
        'port="..." of a fixed localPort of an http endpoint of the site.'
    )
    assert problems(csdef(probe=True, protocol="tcp")) == []
    assert problems(csdef(probe=True, port="8080")) == []


def test_deploy_refuses_with_every_problem_at_once() -> None:
    with pytest.raises(ModelError) as info:
        service_from_bytes(csdef(probe=True, level="elevated").encode(), CSCFG.encode())
    assert [p.line for p in info.value.problems] == [13, 13]


@pytest.mark.parametrize(
    "bindings,expected",
    [(BOTH, ["Http", "Https"]), ('<Binding name="S" endpointName="Https" />', ["Https"])],
)
def test_site_endpoints(bindings: str, expected: list[str]) -> None:
    sd, _ = read_definition(csdef(bindings=bindings).encode())
    assert sd is not None
    assert site_endpoints(sd.roles[0]) == expected
