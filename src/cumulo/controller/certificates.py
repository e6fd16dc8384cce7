"""Reading certificates for a service's certificate store (PEM or PFX), pure apart from parsing.

A .cscfg names certificates by thumbprint: the uppercase hex SHA-1 of the certificate's DER
bytes, which is what ``thumbprint`` computes. A certificate is stored as PEM: the certificate,
then its private key (PKCS#8, unencrypted — the store file is 0600 in the data directory), so an
instance can terminate TLS with it. Bad input gets a sentence naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cumulo.errors import InputError


@dataclass(frozen=True)
class ParsedCertificate:
    thumbprint: str
    subject: str
    not_after: str
    has_private_key: bool
    pem: str


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def parse_certificate(
    data: bytes, *, password: str | None = None, filename: str = "certificate"
) -> ParsedCertificate:
    """A certificate (and its private key, if the file has one) from PEM or PFX bytes."""
    secret = password.encode() if password else None
    key = None
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise InputError(f"{filename} holds no readable PEM certificate.") from None
        if b"PRIVATE KEY-----" in data:
            try:
                key = serialization.load_pem_private_key(data, password=secret)
            except (ValueError, TypeError) as exc:
                raise InputError(
                    f"The private key in {filename} cannot be read ({exc}); "
                    "give its password with --password."
                ) from None
        cert = certs[0]
    else:
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(data, secret)  # type: ignore[assignment]
        except ValueError as exc:
            raise InputError(
                f"{filename} is neither PEM nor a PFX this password opens ({exc})."
            ) from None
        if cert is None:
            raise InputError(f"The PFX {filename} holds no certificate.")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        pem += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return ParsedCertificate(
        thumbprint=thumbprint(cert),
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc.isoformat(),
        has_private_key=key is not None,
        pem=pem.decode(),
    )
