"""The certificate store: PEM and PFX in, thumbprints out, keys never shown; a deployment naming
a missing thumbprint is refused with a sentence."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from cumulo.package.build import build_package

from ...certs import issue  # type: ignore[import-not-found]
from .conftest import CSDEF, cscfg  # type: ignore[import-not-found]


def make_cert(cn: str = "shop.test") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    c = issue(cn, days=30)
    return c.cert, c.key


def thumb(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_pem_and_pfx_certificates(api: httpx.Client, data_dir: Path) -> None:
    api.post("/v1/services", json={"name": "shop"})
    cert, key = make_cert()
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    r = api.post("/v1/services/shop/certificates", json={"data": b64(pem)})
    assert r.status_code == 201, r.text
    assert r.json() | {"not_after": None} == {
        "thumbprint": thumb(cert),
        "thumbprint_algorithm": "sha1",
        "subject": "CN=shop.test",
        "not_after": None,
        "has_private_key": True,
    }
    cert2, key2 = make_cert("other.test")
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key2, cert2, None, serialization.BestAvailableEncryption(b"pw")
    )
    wrong = api.post("/v1/services/shop/certificates", json={"data": b64(pfx), "password": "no"})
    assert wrong.status_code == 400 and "neither PEM nor a PFX" in wrong.json()["detail"]
    ok = api.post("/v1/services/shop/certificates", json={"data": b64(pfx), "password": "pw"})
    assert ok.status_code == 201 and ok.json()["thumbprint"] == thumb(cert2)
    listed = api.get("/v1/services/shop/certificates").json()["certificates"]
    assert sorted(c["thumbprint"] for c in listed) == sorted([thumb(cert), thumb(cert2)])
    assert "PRIVATE" not in str(listed)
    assert api.delete(f"/v1/services/shop/certificates/{thumb(cert2)}").status_code == 204
    assert api.delete(f"/v1/services/shop/certificates/{thumb(cert2)}").status_code == 404
    assert stat.S_IMODE(os.stat(data_dir / "cumulo.db").st_mode) == 0o600


def test_a_deployment_naming_a_missing_thumbprint_is_refused(
    api: httpx.Client, tmp_path: Path
) -> None:
    csdef = CSDEF.replace(
        "<ConfigurationSettings>",
        '<Certificates><Certificate name="Ssl" storeLocation="LocalMachine" storeName="My" />'
        "</Certificates>\n    <ConfigurationSettings>",
    )
    src = tmp_path / "certsvc"
    (src / "Worker").mkdir(parents=True)
    (src / "ServiceDefinition.csdef").write_text(csdef)
    cert, _ = make_cert()
    config = cscfg().replace(
        "</ConfigurationSettings>",
        "</ConfigurationSettings>\n    <Certificates>"
        f'<Certificate name="Ssl" thumbprint="{thumb(cert)}" thumbprintAlgorithm="sha1" />'
        "</Certificates>",
    )
    (src / "ServiceConfiguration.cscfg").write_text(config)
    (src / "Worker" / "worker.py").write_text("print('hi')\n")
    build_package(src, tmp_path / "c.cspkg")
    api.post("/v1/services", json={"name": "tiny"})
    digest = api.post("/v1/packages", content=(tmp_path / "c.cspkg").read_bytes()).json()["digest"]
    r = api.post(
        "/v1/services/tiny/deploymentslots/production",
        json={"package": digest, "configuration": config},
    )
    assert r.status_code == 400
    (problem,) = r.json()["problems"]
    assert problem["file"] == "ServiceConfiguration.cscfg" and problem["line"] is not None
    assert (
        f"has thumbprint {thumb(cert)}, which is not in the certificate store" in problem["message"]
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert api.post("/v1/services/tiny/certificates", json={"data": b64(pem)}).status_code == 201
    r = api.post(
        "/v1/services/tiny/deploymentslots/production",
        json={"package": digest, "configuration": config},
    )
    assert r.status_code == 202, r.text
