"""cumulo.model: Azure's .csdef/.cscfg read safely into typed, immutable dataclasses.

Public entry points (stable names other layers import):

- ``load_service(path_or_dir, config=None) -> Service``: read + validate, raise ``ModelError``.
- ``parse_definition(bytes, filename)`` / ``parse_configuration(bytes, filename)``.
- ``validate(definition, configuration) -> list[Problem]``, ``deploy_blockers(definition)``.
- ``diff(old, new) -> ServiceDiff`` (``cumulo.model.diff``).
- ``resolve(xpath, InstanceContext) -> str`` (``cumulo.model.xpaths``).
- ``vm_size(name) -> VmSize | None`` (``cumulo.model.vmsizes``).

Pure: no processes, no network; the only I/O is reading files in ``service.load_service``.
"""

from cumulo.model.configuration import RoleConfiguration, ServiceConfiguration
from cumulo.model.definition import CUMULO_NAMESPACE, Role, RoleKind, ServiceDefinition
from cumulo.model.parse import (
    parse_configuration,
    parse_definition,
    read_configuration,
    read_definition,
)
from cumulo.model.service import Service, load_service, service_from_bytes
from cumulo.model.validate import AZURE_LIMITS, NO_LIMITS, Limits, deploy_blockers, validate
from cumulo.model.vmsizes import VM_SIZES, VmSize, vm_size
from cumulo.model.webapp import AppRef, SiteApp
from cumulo.model.xpaths import InstanceContext, XPathError, resolve

__all__ = [
    "AZURE_LIMITS",
    "CUMULO_NAMESPACE",
    "NO_LIMITS",
    "VM_SIZES",
    "AppRef",
    "InstanceContext",
    "Limits",
    "Role",
    "RoleConfiguration",
    "RoleKind",
    "Service",
    "ServiceConfiguration",
    "ServiceDefinition",
    "SiteApp",
    "VmSize",
    "XPathError",
    "deploy_blockers",
    "load_service",
    "parse_configuration",
    "parse_definition",
    "read_configuration",
    "read_definition",
    "resolve",
    "service_from_bytes",
    "validate",
    "vm_size",
]
