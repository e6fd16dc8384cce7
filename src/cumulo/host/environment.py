"""Pure: the environment variables and the SDK snapshot of one instance.

Variables every role process gets (besides the role's ``Runtime/Environment``, whose
``RoleInstanceValue`` xpaths are resolved by ``cumulo.model.xpaths.resolve``):

========================================  =====================================================
``CUMULO_DEPLOYMENT_ID``                  the deployment's private id (also ``RoleDeploymentID``)
``CUMULO_SERVICE`` / ``CUMULO_SLOT``      service name, ``production`` or ``staging``
``CUMULO_ROLE_NAME``                      role name (also ``RoleName``)
``CUMULO_ROLE_INSTANCE_ID``               e.g. ``WebRole1_IN_0`` (also ``RoleInstanceID``)
``CUMULO_UPDATE_DOMAIN`` / ``_FAULT_DOMAIN``  the instance's UD and FD
``CUMULO_INSTANCE_ADDRESS``               the instance's own address (DIP), e.g. 127.1.0.3
``CUMULO_ENDPOINT_<NAME>_PORT``           local port of endpoint NAME (upper case, ``_`` for
                                          other characters); ``..._ADDRESS`` its address
``CUMULO_APPROOT`` / ``CUMULO_ROLEROOT``  the instance's approot and instance directory
``CUMULO_LOCAL_RESOURCE_<NAME>``          directory of LocalStorage NAME
``CUMULO_AGENT_SOCKET``                   the SDK's Unix socket (``cumulo.sdk._transport``)
``CUMULO_EMULATED``                       ``true`` under ``cumulo run``, else ``false``
``RoleRoot``                              as on Azure: the instance directory
``TEMP`` / ``TMP`` / ``TMPDIR``           the instance's private temp directory
``HOME``                                  the temp directory (roles have no home)
``PYTHONPATH``                            cumulo's runtime (``cumulo.sdk``) then approot
``PATH``                                  the role interpreter's directory, then system dirs
========================================  =====================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cumulo.model import xpaths
from cumulo.state.spec import EnvVarSpec, InstanceSpec


@dataclass(frozen=True)
class Placement:
    """What the host decided for an instance: its address and local ports."""

    address: str
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class InstancePaths:
    root: str
    approot: str
    temp: str
    logs: str
    socket: str
    local: Mapping[str, str] = field(default_factory=dict)


def env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def xpath_context(
    spec: InstanceSpec, placement: Placement, paths: InstancePaths, settings: Mapping[str, str]
) -> xpaths.InstanceContext:
    return xpaths.InstanceContext(
        deployment_id=spec.deployment_id,
        role_name=spec.role,
        instance_id=spec.instance_id,
        update_domain=spec.update_domain,
        fault_domain=spec.fault_domain,
        emulated=spec.emulated,
        endpoints={
            ep.name: xpaths.EndpointValue(placement.address, placement.ports[ep.name], ep.protocol)
            for ep in spec.endpoints
            if ep.name in placement.ports
        },
        local_resources={
            lr.name: xpaths.LocalResourceValue(paths.local[lr.name], lr.size_mb)
            for lr in spec.local_resources
            if lr.name in paths.local
        },
        settings=dict(settings),
    )


def resolve_variables(
    variables: tuple[EnvVarSpec, ...], context: xpaths.InstanceContext
) -> dict[str, str]:
    """Literal values as given; RoleInstanceValue xpaths resolved (XPathError if unknown)."""
    out: dict[str, str] = {}
    for var in variables:
        if var.xpath is not None:
            out[var.name] = xpaths.resolve(var.xpath, context)
        else:
            out[var.name] = var.value or ""
    return out


def platform_variables(
    spec: InstanceSpec,
    placement: Placement,
    paths: InstancePaths,
    *,
    runtime_path: str,
    interpreter: str,
) -> dict[str, str]:
    env = {
        "CUMULO_DEPLOYMENT_ID": spec.deployment_id,
        "CUMULO_SERVICE": spec.service,
        "CUMULO_SLOT": spec.slot,
        "CUMULO_ROLE_NAME": spec.role,
        "CUMULO_ROLE_INSTANCE_ID": spec.instance_id,
        "CUMULO_UPDATE_DOMAIN": str(spec.update_domain),
        "CUMULO_FAULT_DOMAIN": str(spec.fault_domain),
        "CUMULO_INSTANCE_ADDRESS": placement.address,
        "CUMULO_APPROOT": paths.approot,
        "CUMULO_ROLEROOT": paths.root,
        "CUMULO_AGENT_SOCKET": paths.socket,
        "CUMULO_EMULATED": "true" if spec.emulated else "false",
        "CUMULO_ROLE_PYTHON": interpreter,
        "RoleRoot": paths.root,
        "RoleName": spec.role,
        "RoleInstanceID": spec.instance_id,
        "RoleDeploymentID": spec.deployment_id,
        "TEMP": paths.temp,
        "TMP": paths.temp,
        "TMPDIR": paths.temp,
        "HOME": paths.temp,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([runtime_path, paths.approot]),
        "PATH": os.pathsep.join(
            [os.path.dirname(interpreter), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
    }
    for ep in spec.endpoints:
        if ep.name in placement.ports:
            env[f"CUMULO_ENDPOINT_{env_name(ep.name)}_PORT"] = str(placement.ports[ep.name])
            env[f"CUMULO_ENDPOINT_{env_name(ep.name)}_ADDRESS"] = placement.address
    for name, path in paths.local.items():
        env[f"CUMULO_LOCAL_RESOURCE_{env_name(name)}"] = path
    if spec.certificates:
        env["CUMULO_CERTIFICATES_DIR"] = certificates_dir(paths)
        for cert in spec.certificates:
            crt, key = certificate_files(paths, cert.thumbprint)
            env[f"CUMULO_CERTIFICATE_{env_name(cert.name)}"] = crt
            if "PRIVATE KEY-----" in cert.pem:
                env[f"CUMULO_CERTIFICATE_{env_name(cert.name)}_KEY"] = key
    return env


def certificates_dir(paths: InstancePaths) -> str:
    return os.path.join(paths.root, "certificates")


def certificate_files(paths: InstancePaths, thumbprint: str) -> tuple[str, str]:
    """Paths of a certificate's ``<THUMBPRINT>.crt`` and its private key ``<THUMBPRINT>.key``."""
    base = os.path.join(certificates_dir(paths), thumbprint.upper())
    return base + ".crt", base + ".key"


def snapshot(
    spec: InstanceSpec,
    placement: Placement,
    paths: InstancePaths,
    settings: Mapping[str, str],
    topology: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The SDK's environment snapshot (shape documented in ``cumulo.sdk._transport``)."""
    current = {
        "id": spec.instance_id,
        "role": spec.role,
        "update_domain": spec.update_domain,
        "fault_domain": spec.fault_domain,
        "endpoints": {
            ep.name: {
                "protocol": ep.protocol,
                "address": placement.address,
                "port": placement.ports[ep.name],
                "public_port": ep.port if ep.kind != "internal" else None,
            }
            for ep in spec.endpoints
            if ep.name in placement.ports
        },
    }
    roles: dict[str, list[dict[str, Any]]] = {}
    for role, instances in topology.items():
        visible = [i for i in instances if i.get("endpoints")]
        if visible:
            roles[role] = visible
    own = [i for i in roles.get(spec.role, []) if i.get("id") != spec.instance_id]
    roles[spec.role] = sorted([current, *own], key=lambda i: str(i.get("id")))
    return {
        "deployment_id": spec.deployment_id,
        "emulated": spec.emulated,
        "current": current,
        "roles": roles,
        "settings": dict(settings),
        "local_resources": {
            lr.name: {"path": paths.local[lr.name], "size_mb": lr.size_mb}
            for lr in spec.local_resources
            if lr.name in paths.local
        },
    }
