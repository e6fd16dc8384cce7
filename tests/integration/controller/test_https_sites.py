"""https endpoints of a hosted site, on the platform: a certificate whose key does not match is
refused when it is added, a deployment whose https certificate has no private key is refused
with a sentence naming the .cscfg line, and a deployed web role serves TLS through its VIP (the
L4 load balancer passes TLS through) and plain HTTP on its http endpoint, at once."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cumulo.controller.certificates import parse_certificate, tls_problems
from cumulo.errors import InputError
from cumulo.model.service import service_from_bytes

from ...certs import issue  # type: ignore[import-not-found]
from ...platform_harness import Platform, running  # type: ignore[import-not-found]

NAME = "web.cumulo.test"

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="secure" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
    xmlns:cumulo="http://cumulo.dev/schemas/2026/service-model">
  <WebRole name="Web" vmsize="Small">
    <Sites>
      <Site name="Web" cumulo:wsgiApp="app:application">
        <Bindings>
          <Binding name="Http" endpointName="Http" />
          <Binding name="Https" endpointName="Https" />
        </Bindings>
      </Site>
    </Sites>
    <Endpoints>
      <InputEndpoint name="Http" protocol="http" port="{http}" localPort="*" />
      <InputEndpoint name="Https" protocol="https" port="{https}" localPort="*" certificate="SSL" />
    </Endpoints>
    <Certificates>
      <Certificate name="SSL" storeLocation="LocalMachine" storeName="My" />
    </Certificates>
  </WebRole>
</ServiceDefinition>
"""

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="secure" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Web">
    <Instances count="1" />
    <Certificates>
      <Certificate name="SSL" thumbprint="{thumbprint}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
</ServiceConfiguration>
"""

APP = """
def application(environ, start_response):
    body = f"{environ['wsgi.url_scheme']} secure".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def certificate(common_name: str = NAME) -> tuple[str, bytes, bytes, bytes]:
    """A self-signed server certificate: (thumbprint, certificate PEM, key PEM, PFX)."""
    c = issue(common_name)
    return c.thumbprint, c.pem.encode(), c.key_pem.encode(), c.pfx(b"secret")


def test_a_key_of_another_certificate_is_refused_when_added() -> None:
    thumb, public, _, _ = certificate()
    _, _, other_key, _ = certificate("other")
    with pytest.raises(InputError) as info:
        parse_certificate(public + other_key, filename="ssl.pem")
    assert str(info.value) == (
        f"The private key in ssl.pem does not belong to its certificate CN={NAME} (thumbprint "
        f"{thumb}); give the key that was issued with this certificate."
    )
    assert parse_certificate(public).has_private_key is False


def test_the_chain_a_certificate_was_added_with_is_kept() -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    from ..host.test_https_sites import issued_chain

    thumb, leaf, key, mid, _ = issued_chain()
    # a fullchain in any order: the certificate is the one the key belongs to
    parsed = parse_certificate((mid + leaf + key).encode())
    assert parsed.thumbprint == thumb
    assert parsed.pem == leaf + mid + key
    pfx = pkcs12.serialize_key_and_certificates(
        b"ssl",
        serialization.load_pem_private_key(key.encode(), None),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(leaf.encode()),
        [x509.load_pem_x509_certificate(mid.encode())],
        serialization.NoEncryption(),
    )
    assert parse_certificate(pfx).pem == leaf + mid + key


def test_an_https_certificate_without_its_key_is_a_problem_at_deploy() -> None:
    thumb, public, private, _ = certificate()
    model = service_from_bytes(
        CSDEF.replace("{http}", "80").replace("{https}", "443").encode(),
        CSCFG.replace("{thumbprint}", thumb).encode(),
    )
    (problem,) = tls_problems("secure", model, {thumb: public.decode()})
    assert str(problem) == (
        f"ServiceConfiguration.cscfg:6: Certificate 'SSL' of role 'Web' (thumbprint {thumb}) "
        "serves TLS on https endpoint 'Https', but the certificate store of service 'secure' "
        "holds no private key for it; add it again with its key (a PFX, or a PEM with the key) "
        "with 'cumulo cert add secure FILE'."
    )
    assert tls_problems("secure", model, {thumb: (public + private).decode()}) == []
    assert tls_problems("secure", model, {}) == []  # a missing thumbprint is reported elsewhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_web_role_serves_tls_through_the_vip(tmp_path: Path) -> None:
    thumb, public, _, pfx = certificate()
    src = tmp_path / "secure"
    (src / "Web").mkdir(parents=True)
    (src / "Web" / "app.py").write_text(APP)
    csdef = CSDEF.replace("{http}", str(free_port())).replace("{https}", str(free_port()))
    (src / "ServiceDefinition.csdef").write_text(csdef)
    (src / "ServiceConfiguration.cscfg").write_text(CSCFG.replace("{thumbprint}", thumb))
    (tmp_path / "ssl.crt").write_bytes(public)
    (tmp_path / "ssl.pfx").write_bytes(pfx)
    client = ssl.create_default_context(cadata=public.decode())
    client.check_hostname = False  # the VIP's address is not in the certificate; its chain is

    with running(lambda data: Platform(data), "cumulo-https-") as platform:
        assert platform.run_cli("service", "create", "secure").returncode == 0
        out = platform.run_cli("cert", "add", "secure", str(tmp_path / "ssl.crt"))
        assert out.returncode == 0, out.stderr
        # the certificate alone cannot serve TLS: refused before anything runs
        out = platform.run_cli("deploy", "secure", str(src), "--timeout", "90")
        assert out.returncode == 2, out.stdout + out.stderr
        problem = f"cscfg:6: Certificate 'SSL' of role 'Web' (thumbprint {thumb}) serves TLS"
        assert problem in out.stderr and "holds no private key" in out.stderr, out.stderr
        out = platform.run_cli(
            "cert", "add", "secure", str(tmp_path / "ssl.pfx"), "--password", "secret"
        )
        assert out.returncode == 0, out.stderr
        out = platform.run_cli("deploy", "secure", str(src), "--timeout", "90")
        assert out.returncode == 0, out.stderr + platform.logs()

        vips = platform.client.get_deployment("secure", "production")["vips"]
        with httpx.Client(verify=client, timeout=10) as http:
            secure = http.get(f"https://{vips['Https']}/")
            assert (secure.status_code, secure.text) == (200, "https secure")
            plain = http.get(f"http://{vips['Http']}/")
            assert (plain.status_code, plain.text) == (200, "http secure")
            # plain HTTP to the https VIP is no answer: TLS ends in the instance, not the LB
            with pytest.raises(httpx.HTTPError):
                http.get(f"http://{vips['Https']}/")
