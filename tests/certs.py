"""Test certificates made with ``cryptography``: self-signed ones and root -> intermediate ->
leaf chains, with the forms cumulo takes them in (PEM, PKCS#8 key, PFX) and Azure's thumbprint
(uppercase hex SHA-1 of the DER certificate)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TestCertificate:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    __test__ = False  # not a test class, whatever its name

    @property
    def thumbprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def pfx(self, password: bytes, name: bytes = b"ssl") -> bytes:
        from cryptography.hazmat.primitives.serialization import pkcs12

        return pkcs12.serialize_key_and_certificates(
            name, self.key, self.cert, None, serialization.BestAvailableEncryption(password)
        )


def issue(
    subject: str,
    *,
    issuer: TestCertificate | None = None,
    ca: bool = True,
    days: int = 1,
    names: list[Any] | None = None,
) -> TestCertificate:
    """A certificate for ``subject`` signed by ``issuer`` (itself when None), valid from five
    minutes ago for ``days``, with ``names`` as its subject alternative names (none: the
    subject as a DNS name and 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = issuer.cert.subject if issuer is not None else None
    subject_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    if names is None:
        names = [x509.DNSName(subject), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer_name or subject_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return TestCertificate(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)
