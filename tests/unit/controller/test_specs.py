"""``instance_spec``: a role's certificates travel from the certificate store into the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.controller.specs import instance_spec
from cumulo.errors import UnsupportedError
from cumulo.model import load_service
from cumulo.state.spec import CertificateSpec, InstanceSpec

SERVICE = Path(__file__).resolve().parents[2] / "fixtures" / "services" / "python-web"
SSL = "0123456789ABCDEF0123456789ABCDEF01234567"
SIGNING = "FEDCBA9876543210FEDCBA9876543210FEDCBA98"


def build(certificates: dict[str, str]) -> InstanceSpec:
    service = load_service(SERVICE)
    role = next(r for r in service.definition.roles if r.certificates)
    return instance_spec(
        service,
        deployment_id="d1",
        service_name="svc",
        slot="production",
        role_name=role.name,
        instance_id=f"{role.name}_IN_0",
        update_domain=0,
        fault_domain=0,
        approot_root=Path("/nonexistent"),
        certificates=certificates,
    )


def test_declared_certificates_come_with_their_pem_and_store_details() -> None:
    spec = build({SSL: "ssl-pem", SIGNING: "signing-pem", "OTHER": "x"})
    assert spec.certificates == (
        CertificateSpec("SslCert", SSL, "ssl-pem", "LocalMachine", "My", "limitedOrElevated"),
        CertificateSpec(
            "Signing", SIGNING, "signing-pem", "CurrentUser", "TrustedPeople", "elevated"
        ),
    )
    assert InstanceSpec.from_json(spec.to_json()) == spec


def test_a_certificate_gone_from_the_store_is_a_sentence() -> None:
    with pytest.raises(UnsupportedError, match=f"thumbprint {SIGNING}, which is no longer"):
        build({SSL: "ssl-pem"})
