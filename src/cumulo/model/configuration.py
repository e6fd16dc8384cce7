"""The service configuration (``ServiceConfiguration.*.cscfg``) as typed, immutable dataclasses.

The configuration is uploaded apart from the package and may change while a deployment runs:
instance counts, setting values, certificate thumbprints, network configuration. As in
``definition``, every element keeps its ``line`` (excluded from equality).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CSCFG_NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
"""Azure's XML namespace for ``.cscfg`` files."""


def _line() -> int | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SettingValue:
    """``ConfigurationSettings/Setting name= value=``."""

    name: str
    value: str
    line: int | None = _line()


@dataclass(frozen=True)
class CertificateThumbprint:
    """``Certificates/Certificate``: the thumbprint (uppercase hex) of a declared certificate."""

    name: str
    thumbprint: str
    thumbprint_algorithm: str = "sha1"
    line: int | None = _line()


@dataclass(frozen=True)
class RoleConfiguration:
    """``Role``: instance count, setting values and certificates for one role."""

    name: str
    instances: int
    settings: tuple[SettingValue, ...] = ()
    certificates: tuple[CertificateThumbprint, ...] = ()
    vm_name: str | None = None
    line: int | None = _line()
    instances_line: int | None = _line()

    @property
    def setting_values(self) -> dict[str, str]:
        """Setting name -> value (a fresh dict each call)."""
        return {s.name: s.value for s in self.settings}

    def certificate(self, name: str) -> CertificateThumbprint | None:
        """The certificate called ``name``, if any."""
        return next((c for c in self.certificates if c.name == name), None)


@dataclass(frozen=True)
class AclRule:
    """``AccessControl/Rule``: permit or deny a remote subnet; lower ``order`` wins."""

    order: int
    action: str
    remote_subnet: str
    description: str | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class AccessControl:
    """``AccessControls/AccessControl``: a named, ordered list of rules."""

    name: str
    rules: tuple[AclRule, ...] = ()
    line: int | None = _line()


@dataclass(frozen=True)
class EndpointAcl:
    """``EndpointAcls/EndpointAcl``: applies an access control to a role's input endpoint."""

    role: str
    endpoint: str
    access_control: str
    line: int | None = _line()


@dataclass(frozen=True)
class DnsServer:
    """``Dns/DnsServers/DnsServer``."""

    name: str
    ip_address: str
    line: int | None = _line()


@dataclass(frozen=True)
class InstanceAddress:
    """``AddressAssignments/InstanceAddress``: subnets (and public IPs) of a role's instances."""

    role_name: str
    subnets: tuple[str, ...] = ()
    public_ips: tuple[str, ...] = ()
    line: int | None = _line()


@dataclass(frozen=True)
class FrontendIPConfiguration:
    """``LoadBalancer/FrontendIPConfiguration`` of an internal load balancer."""

    type: str
    subnet: str | None = None
    static_ip_address: str | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class LoadBalancerConfig:
    """``LoadBalancers/LoadBalancer``: an internal load balancer that input endpoints may join."""

    name: str
    frontend: FrontendIPConfiguration | None = None
    line: int | None = _line()


@dataclass(frozen=True)
class NetworkConfiguration:
    """``NetworkConfiguration``: parsed and kept; ACLs and load balancers are used by the LB."""

    access_controls: tuple[AccessControl, ...] = ()
    endpoint_acls: tuple[EndpointAcl, ...] = ()
    dns_servers: tuple[DnsServer, ...] = ()
    virtual_network_site: str | None = None
    instance_addresses: tuple[InstanceAddress, ...] = ()
    reserved_ips: tuple[str, ...] = ()
    load_balancers: tuple[LoadBalancerConfig, ...] = ()
    line: int | None = _line()


@dataclass(frozen=True)
class ServiceConfiguration:
    """The whole ``.cscfg``."""

    service_name: str
    roles: tuple[RoleConfiguration, ...]
    os_family: str | None = None
    os_version: str | None = None
    schema_version: str | None = None
    network: NetworkConfiguration | None = None
    line: int | None = _line()

    def role(self, name: str) -> RoleConfiguration | None:
        """The configuration of role ``name``, if any."""
        return next((r for r in self.roles if r.name == name), None)

    @property
    def total_instances(self) -> int:
        """Instances over all roles."""
        return sum(r.instances for r in self.roles)
