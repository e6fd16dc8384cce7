"""Reading certificates for a service's certificate store (PEM or PFX), pure apart from parsing.

A .cscfg names certificates by thumbprint: the uppercase hex SHA-1 of the certificate's DER
bytes, which is what ``thumbprint`` computes. A certificate is stored as PEM: the certificate,
the rest of its chain when the file holds one (a PEM's other certificates, a PFX's extra ones),
then its private key (PKCS#8, unencrypted — the store file is 0600 in the data directory), so an
instance can terminate TLS with it. Bad input gets a sentence naming the file; a private key
that does not belong to the certificate is refused when it is added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cumulo.errors import InputError, Problem
from cumulo.model.definition import EndpointProtocol
from cumulo.model.service import Service


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
        # the certificate is the one the key belongs to (else the first); the others are its
        # chain (a fullchain.pem), kept so that a site serves its intermediates
        cert = next((c for c in certs if key is not None and _key_matches(key, c)), certs[0])
        chain = [c for c in certs if c is not cert]
    else:
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(data, secret)  # type: ignore[assignment]
        except ValueError as exc:
            raise InputError(
                f"{filename} is neither PEM nor a PFX this password opens ({exc})."
            ) from None
        if cert is None:
            raise InputError(f"The PFX {filename} holds no certificate.")
    if key is not None and not _key_matches(key, cert):
        raise InputError(
            f"The private key in {filename} does not belong to its certificate "
            f"{cert.subject.rfc4514_string() or '(no subject)'} (thumbprint {thumbprint(cert)}); "
            "give the key that was issued with this certificate."
        )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
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


def _key_matches(key: object, cert: x509.Certificate) -> bool:
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(public().public_bytes(*spki) == cert.public_key().public_bytes(*spki))
    except (ValueError, TypeError):
        return False


def has_private_key(pem: str) -> bool:
    return "PRIVATE KEY-----" in pem


def tls_problems(service: str, model: Service, stored: Mapping[str, str]) -> list[Problem]:
    """An https input endpoint serves TLS with its certificate, so the service's store
    (``stored``: thumbprint -> PEM) must hold that certificate's private key. One problem per
    certificate line of the .cscfg; thumbprints missing from the store are reported elsewhere."""
    problems = []
    for rc in model.configuration.roles:
        role = model.definition.role(rc.name)
        if role is None:
            continue
        served: dict[str, str] = {}
        for ep in role.input_endpoints:
            if ep.protocol is EndpointProtocol.HTTPS and ep.certificate:
                served.setdefault(ep.certificate, ep.name)
        for cert in rc.certificates:
            pem = stored.get(cert.thumbprint.upper())
            if cert.name not in served or pem is None or has_private_key(pem):
                continue
            problems.append(
                Problem(
                    model.configuration_file,
                    cert.line,
                    f"Certificate '{cert.name}' of role '{rc.name}' (thumbprint "
                    f"{cert.thumbprint.upper()}) serves TLS on https endpoint "
                    f"'{served[cert.name]}', but the certificate store of service '{service}' "
                    "holds no private key for it; add it again with its key (a PFX, or a PEM "
                    f"with the key) with 'cumulo cert add {service} FILE'.",
                )
            )
    return problems
