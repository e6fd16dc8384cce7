"""The ``RoleInstanceValue xpath=`` forms Azure supports (reference §3.4) and a pure resolver.

Azure does not evaluate general XPath: it accepts a fixed list of paths into a virtual
``/RoleEnvironment`` document. cumulo accepts exactly that list (``SUPPORTED_FORMS``); predicates
may use single or double quotes. Validation uses ``parse_xpath`` to refuse anything else, and the
host agent calls ``resolve(xpath, context)`` for every instance it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cumulo.errors import InputError


class XPathError(InputError):
    """An xpath that is not a supported form, or names something the instance does not have."""

    code = "InvalidXPath"


class XPathKind(StrEnum):
    """What a supported xpath reads."""

    EMULATED = "emulated"
    DEPLOYMENT_ID = "deployment-id"
    INSTANCE_ID = "instance-id"
    UPDATE_DOMAIN = "update-domain"
    FAULT_DOMAIN = "fault-domain"
    ROLE_NAME = "role-name"
    SETTING = "setting"
    LOCAL_RESOURCE = "local-resource"
    ENDPOINT = "endpoint"


SUPPORTED_FORMS: tuple[str, ...] = (
    "/RoleEnvironment/Deployment/@emulated",
    "/RoleEnvironment/Deployment/@id",
    "/RoleEnvironment/CurrentInstance/@id",
    "/RoleEnvironment/CurrentInstance/@updateDomain",
    "/RoleEnvironment/CurrentInstance/@faultDomain",
    "/RoleEnvironment/CurrentInstance/@roleName",
    "/RoleEnvironment/CurrentInstance/ConfigurationSettings/ConfigurationSetting[@name='X']/@value",
    "/RoleEnvironment/CurrentInstance/LocalResources/LocalResource[@name='X']/@path",
    "/RoleEnvironment/CurrentInstance/LocalResources/LocalResource[@name='X']/@sizeInMB",
    "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='X']/@protocol",
    "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='X']/@address",
    "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='X']/@port",
)
"""Every accepted form, ``X`` standing for a name (documentation and error messages)."""

_SIMPLE = {
    "/RoleEnvironment/Deployment/@emulated": XPathKind.EMULATED,
    "/RoleEnvironment/Deployment/@id": XPathKind.DEPLOYMENT_ID,
    "/RoleEnvironment/CurrentInstance/@id": XPathKind.INSTANCE_ID,
    "/RoleEnvironment/CurrentInstance/@updateDomain": XPathKind.UPDATE_DOMAIN,
    "/RoleEnvironment/CurrentInstance/@faultDomain": XPathKind.FAULT_DOMAIN,
    "/RoleEnvironment/CurrentInstance/@roleName": XPathKind.ROLE_NAME,
}
_NAMED = re.compile(
    r"^/RoleEnvironment/CurrentInstance/"
    r"(?P<path>ConfigurationSettings/ConfigurationSetting|LocalResources/LocalResource"
    r"|Endpoints/Endpoint)"
    r"""\[\s*@name\s*=\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")\s*\]/@(?P<attr>[A-Za-z]+)$"""
)
_NAMED_ATTRS = {
    "ConfigurationSettings/ConfigurationSetting": (XPathKind.SETTING, ("value",)),
    "LocalResources/LocalResource": (XPathKind.LOCAL_RESOURCE, ("path", "sizeInMB")),
    "Endpoints/Endpoint": (XPathKind.ENDPOINT, ("protocol", "address", "port")),
}


@dataclass(frozen=True)
class XPathRef:
    """A parsed supported xpath: ``kind``, the ``name`` in its predicate, the ``attribute``."""

    kind: XPathKind
    name: str | None = None
    attribute: str | None = None


def parse_xpath(xpath: str) -> XPathRef | None:
    """The parsed form of ``xpath``, or None when it is not one of ``SUPPORTED_FORMS``."""
    text = xpath.strip()
    if text in _SIMPLE:
        return XPathRef(_SIMPLE[text])
    m = _NAMED.match(text)
    if m is None:
        return None
    kind, attrs = _NAMED_ATTRS[m.group("path")]
    attr = m.group("attr")
    if attr not in attrs:
        return None
    name = m.group("sq") if m.group("sq") is not None else m.group("dq")
    return XPathRef(kind, name, attr)


@dataclass(frozen=True)
class EndpointValue:
    """An instance's endpoint as role code sees it: its address, port and protocol."""

    address: str
    port: int
    protocol: str


@dataclass(frozen=True)
class LocalResourceValue:
    """A local resource's directory (absolute path) and quota in MB."""

    path: str
    size_mb: int


@dataclass(frozen=True)
class InstanceContext:
    """What one instance's xpaths can read. ``settings`` are the cscfg values of its role."""

    deployment_id: str
    role_name: str
    instance_id: str
    update_domain: int
    fault_domain: int
    emulated: bool = False
    endpoints: Mapping[str, EndpointValue] = field(default_factory=dict)
    local_resources: Mapping[str, LocalResourceValue] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


def resolve(xpath: str, context: InstanceContext) -> str:
    """The string value of ``xpath`` for the instance described by ``context``.

    Raises ``XPathError`` for an unsupported form or a name the instance does not have.
    """
    ref = parse_xpath(xpath)
    if ref is None:
        raise XPathError(f"RoleInstanceValue xpath '{xpath}' is not a supported form.")
    if ref.kind is XPathKind.EMULATED:
        return "true" if context.emulated else "false"
    if ref.kind is XPathKind.DEPLOYMENT_ID:
        return context.deployment_id
    if ref.kind is XPathKind.INSTANCE_ID:
        return context.instance_id
    if ref.kind is XPathKind.UPDATE_DOMAIN:
        return str(context.update_domain)
    if ref.kind is XPathKind.FAULT_DOMAIN:
        return str(context.fault_domain)
    if ref.kind is XPathKind.ROLE_NAME:
        return context.role_name
    name = ref.name or ""
    if ref.kind is XPathKind.SETTING:
        if name not in context.settings:
            raise XPathError(
                f"RoleInstanceValue xpath '{xpath}' names setting '{name}', which role "
                f"'{context.role_name}' does not have."
            )
        return context.settings[name]
    if ref.kind is XPathKind.LOCAL_RESOURCE:
        res = context.local_resources.get(name)
        if res is None:
            raise XPathError(
                f"RoleInstanceValue xpath '{xpath}' names local resource '{name}', which role "
                f"'{context.role_name}' does not have."
            )
        return res.path if ref.attribute == "path" else str(res.size_mb)
    ep = context.endpoints.get(name)
    if ep is None:
        raise XPathError(
            f"RoleInstanceValue xpath '{xpath}' names endpoint '{name}', which role "
            f"'{context.role_name}' does not have."
        )
    if ref.attribute == "address":
        return ep.address
    if ref.attribute == "port":
        return str(ep.port)
    return ep.protocol
