"""Which listening sockets of a hosted site serve TLS, and with which certificate files.

A Site's https binding is served with TLS by the site's own server (``cumulo_sitehost``) using
the certificate the endpoint names (``InputEndpoint certificate="..."`` in the .csdef, its
thumbprint in the .cscfg): the files ``<THUMBPRINT>.crt`` and ``<THUMBPRINT>.key`` that the guest
agent writes into the instance (see ``Guest._write_certificates``). An http binding is served as
plain HTTP. The load balancer is L4 and passes TLS through untouched.

``site_tls`` is called by the guest agent just before it starts the site: every problem that
would make the site fail to serve TLS (no certificate, no private key, a key the site's user may
not read, a key that does not match the certificate) becomes one sentence naming the endpoint,
the certificate and the file, instead of a server traceback in the site's log.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cumulo.errors import InputError
from cumulo.host.environment import InstancePaths, certificate_files
from cumulo.state.spec import CertificateSpec, EndpointSpec, InstanceSpec


def site_tls(
    spec: InstanceSpec, paths: InstancePaths, endpoints: Sequence[EndpointSpec]
) -> dict[str, tuple[str, str]]:
    """Endpoint name -> (certificate file, key file) for each https endpoint of ``endpoints``
    (the site's bindings); http endpoints are absent. Raises ``InputError`` (a sentence)."""
    out: dict[str, tuple[str, str]] = {}
    for ep in endpoints:
        if ep.protocol != "https":
            continue
        what = f"https endpoint '{ep.name}' of role '{spec.role}'"
        if not ep.certificate:
            raise InputError(
                f"The {what} names no certificate, so its site cannot serve TLS; add "
                'certificate="..." naming a <Certificate> of the role to the InputEndpoint.'
            )
        cert = next((c for c in spec.certificates if c.name == ep.certificate), None)
        if cert is None:
            raise InputError(
                f"The {what} names certificate '{ep.certificate}', which this instance was not "
                "given; give its thumbprint in the role's <Certificates> of the .cscfg and add "
                "the certificate with 'cumulo cert add'."
            )
        label = f"Certificate '{cert.name}' (thumbprint {cert.thumbprint}) of the {what}"
        if "PRIVATE KEY-----" not in cert.pem:
            raise InputError(
                f"{label} has no private key, so the site cannot serve TLS with it; add it "
                "again with its key (a PFX, or a PEM with the key) with 'cumulo cert add'."
            )
        if cert.permission_level == "elevated" and spec.execution_context != "elevated":
            raise InputError(
                f"{label} has permissionLevel 'elevated', so the limited site cannot read its "
                'private key; drop permissionLevel="elevated" or run the role with '
                '<Runtime executionContext="elevated">.'
            )
        crt, key = certificate_files(paths, cert.thumbprint)
        crt = with_intermediates(spec, cert, crt)
        check_pair(crt, key, label)
        out[ep.name] = (crt, key)
    return out


def with_intermediates(spec: InstanceSpec, cert: CertificateSpec, crt: str) -> str:
    """The file to serve ``cert`` from: ``crt`` (the certificate and the chain it was added
    with), or, when the role declares the missing intermediates as certificates of the ``CA``
    store (Azure's way: ``<Certificate storeName="CA">``), ``<THUMBPRINT>.chain.crt`` with them
    appended in issuer order. Self-signed roots are left out, as a server sends no root."""
    from cryptography import x509

    def certs(pem: str) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            return []

    chain = certs(cert.pem)
    pool = [
        c
        for other in spec.certificates
        if other is not cert and other.store_name.lower() == "ca"
        for c in certs(other.pem)
        if c.issuer != c.subject
    ]
    if not chain or not pool:
        return crt
    added: list[x509.Certificate] = []
    while True:
        issuer = (added or chain)[-1].issuer
        found = next((c for c in pool if c.subject == issuer and c not in chain + added), None)
        if found is None:
            break
        added.append(found)
    if not added:
        return crt
    from cryptography.hazmat.primitives.serialization import Encoding

    path = Path(crt).with_suffix(".chain.crt")
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain + added))
    os.chmod(path, 0o644)
    return str(path)


def check_pair(crt: str, key: str, label: str) -> None:
    """Load ``crt`` with ``key`` as a TLS server would; a sentence when that fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(crt, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise InputError(
                f"The private key {key} does not match the certificate {crt} ({label}); add "
                "the certificate again with the key issued with it, with 'cumulo cert add'."
            ) from None
        raise InputError(
            f"{label} cannot be loaded from {crt} and {key} ({exc.reason or exc})."
        ) from None
    except OSError as exc:
        raise InputError(
            f"{label} cannot be read: {exc.strerror or exc} ({exc.filename or crt})."
        ) from None
