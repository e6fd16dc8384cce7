"""From the service model to the controller's records, and records to and from JSON documents.

- ``role_versions(definition, configuration, role_files)``: each role's ``RoleVersion``.
  ``code`` digests the role's own files in the package (``role_file_digests``: names and
  sha256 of the entries under ``<Role>/``, so an upgrade that changes one role's files recycles
  that role only), the role's definition (its dataclass ``repr``, which leaves out line
  numbers), its certificate thumbprints, the guest OS of the .cscfg and the values of settings
  its processes receive as environment variables (read once at start): anything in it changes
  means a recycle. ``settings`` digests the other setting values, which
  an instance with an SDK connection takes in place (``Changing``/``Changed``).
  A new cumulo release whose model prints a role differently recycles that role once.
- ``from_model``: a ``DesiredDeployment`` for a new deployment.
- ``to_document`` / ``from_document``: the JSON the store keeps as the deployment's ``document``.
- ``read_package_definition``: the ``ServiceDefinition.csdef`` bytes inside a package.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from cumulo.controller.records import (
    AclRule,
    DesiredDeployment,
    DesiredRole,
    DomainState,
    InputEndpoint,
    ProbeRule,
    RoleVersion,
    Slot,
    UpgradeMode,
    Walk,
    WalkKind,
)
from cumulo.errors import InputError, PackageError
from cumulo.model.configuration import ServiceConfiguration
from cumulo.model.definition import Role, ServiceDefinition
from cumulo.model.xpaths import XPathKind, parse_xpath

DEFINITION_ENTRY = "ServiceDefinition.csdef"
MAX_DEFINITION_BYTES = 4 * 1024 * 1024


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def settings_in_environment(role: Role) -> set[str]:
    """Settings whose values a role's processes get as environment variables
    (``RoleInstanceValue xpath=".../ConfigurationSetting[@name='X']/@value"`` in its Runtime or
    startup tasks): those are read once at process start, so changing one needs a recycle."""
    variables = list(role.runtime.environment) if role.runtime else []
    for task in role.startup_tasks:
        variables += task.environment
    names = set()
    for v in variables:
        ref = parse_xpath(v.xpath) if v.xpath else None
        if ref is not None and ref.kind is XPathKind.SETTING and ref.name:
            names.add(ref.name)
    return names


def role_file_digests(entries: Mapping[str, str], roles: Iterable[str]) -> dict[str, str]:
    """Role name -> digest of its files in a package (``entries``: entry name -> sha256): the
    names and contents of the entries under ``<Role>/``, whatever else the package holds."""
    out = {}
    for role in roles:
        prefix = f"{role}/"
        out[role] = _digest(
            *(f"{name}={sha}" for name, sha in sorted(entries.items()) if name.startswith(prefix))
        )
    return out


def role_versions(
    definition: ServiceDefinition,
    configuration: ServiceConfiguration,
    role_files: Mapping[str, str],
) -> dict[str, RoleVersion]:
    out: dict[str, RoleVersion] = {}
    guest_os = f"{configuration.os_family}/{configuration.os_version}"
    for role in definition.roles:
        rc = configuration.role(role.name)
        certs = sorted(f"{c.name}={c.thumbprint}" for c in rc.certificates) if rc else []
        settings = sorted(rc.setting_values.items()) if rc else []
        baked = settings_in_environment(role)
        out[role.name] = RoleVersion(
            code=_digest(
                role_files.get(role.name, ""),
                repr(role),
                guest_os,
                *certs,
                *(f"env:{k}={v}" for k, v in settings if k in baked),
            ),
            settings=_digest(*(f"{k}={v}" for k, v in settings if k not in baked)),
        )
    return out


def input_endpoints(
    definition: ServiceDefinition, configuration: ServiceConfiguration, role: Role
) -> tuple[InputEndpoint, ...]:
    """A role's input endpoints with their load-balancing policy: distribution, idle timeout,
    ``ignoreRoleInstanceStatus`` and custom probe from the .csdef, ACLs from the .cscfg's
    ``NetworkConfiguration`` (``EndpointAcls`` binding an ``AccessControl`` to the endpoint)."""
    network = configuration.network
    controls = {c.name: c for c in network.access_controls} if network else {}
    bound = (
        {(b.role, b.endpoint): b.access_control for b in network.endpoint_acls} if network else {}
    )
    out: list[InputEndpoint] = []
    for e in role.input_endpoints:
        probe = None
        if e.load_balancer_probe is not None:
            p = definition.probe(e.load_balancer_probe)
            if p is not None:
                probe = ProbeRule(
                    str(p.protocol),
                    p.path,
                    p.port,
                    float(p.interval_seconds),
                    float(p.timeout_seconds),
                )
        control = controls.get(bound.get((role.name, e.name), ""))
        acl = tuple(
            sorted(
                AclRule(r.order, r.action, r.remote_subnet, r.description or "")
                for r in (control.rules if control else ())
            )
        )
        dist = e.load_balancer_distribution
        out.append(
            InputEndpoint(
                e.name,
                str(e.protocol),
                e.port,
                distribution=dist if dist in ("sourceIP", "sourceIPProtocol") else "fiveTuple",
                idle_timeout=e.idle_timeout_minutes * 60.0,
                ignore_status=e.ignore_role_instance_status,
                probe=probe,
                acl=acl,
            )
        )
    return tuple(out)


def with_endpoints_of(
    dep: DesiredDeployment, definition: ServiceDefinition, configuration: ServiceConfiguration
) -> DesiredDeployment:
    """``dep`` with every role's input endpoints (and their policy) taken from a new model, as
    after a configuration change (ACLs) or an upgrade (probes, distribution)."""
    roles = []
    for r in dep.roles:
        role = definition.role(r.name)
        if role is not None:
            r = replace(r, input_endpoints=input_endpoints(definition, configuration, role))
        roles.append(r)
    return replace(dep, roles=tuple(roles))


def from_model(
    *,
    deployment_id: str,
    service: str,
    slot: Slot,
    running: bool,
    definition: ServiceDefinition,
    configuration: ServiceConfiguration,
    role_files: Mapping[str, str],
) -> DesiredDeployment:
    versions = role_versions(definition, configuration, role_files)
    roles = []
    for role in definition.roles:
        rc = configuration.role(role.name)
        count = rc.instances if rc is not None else 1
        roles.append(
            DesiredRole(
                name=role.name,
                indices=tuple(range(count)),
                version=versions[role.name],
                input_endpoints=input_endpoints(definition, configuration, role),
                has_internal_endpoints=bool(role.internal_endpoints),
            )
        )
    return DesiredDeployment(
        id=deployment_id,
        service=service,
        slot=slot,
        running=running,
        update_domain_count=definition.upgrade_domain_count,
        roles=tuple(roles),
    )


def counts_of(configuration: ServiceConfiguration) -> dict[str, int]:
    return {r.name: r.instances for r in configuration.roles}


def read_package_definition(data: bytes) -> bytes:
    """The ``ServiceDefinition.csdef`` inside a package, with a clear error when it is not one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            try:
                info = zf.getinfo(DEFINITION_ENTRY)
            except KeyError:
                raise PackageError(
                    f"The package holds no {DEFINITION_ENTRY}; build it with 'cumulo package'."
                ) from None
            if info.file_size > MAX_DEFINITION_BYTES:
                raise PackageError(
                    f"The package's {DEFINITION_ENTRY} is {info.file_size} bytes; "
                    f"at most {MAX_DEFINITION_BYTES} are read."
                )
            return zf.read(info)
    except zipfile.BadZipFile:
        raise PackageError(
            "The package is not a zip file; build it with 'cumulo package'."
        ) from None


# -- sources: which package and configuration produced a role version -------------------------


def version_key(version: RoleVersion) -> str:
    return f"{version.code}.{version.settings}"


def with_source(
    document: dict[str, Any],
    previous: Any,
    dep: DesiredDeployment,
    *,
    package: str | None = None,
    configuration: str | None = None,
) -> dict[str, Any]:
    """``document`` plus the ``sources`` list: each (package, configuration) that produced a role
    version still in use (current, or the ``previous`` of a walk), so a host can be given the
    full spec of an instance that a walk has not reached yet. ``package``/``configuration`` add
    the source of the versions now in ``dep``."""
    sources: list[dict[str, Any]] = [dict(s) for s in previous or []]
    if package is not None and configuration is not None:
        sources.append(
            {
                "package": package,
                "configuration": configuration,
                "versions": {r.name: version_key(r.version) for r in dep.roles},
            }
        )
    used = {(r.name, version_key(r.version)) for r in dep.roles}
    if dep.walk is not None:
        used |= {(name, version_key(v)) for name, v in dep.walk.previous.items()}
    kept: list[dict[str, Any]] = []
    for source in reversed(sources):  # newest first wins
        in_use = any((name, key) in used for name, key in source["versions"].items())
        if in_use and source not in kept:
            kept.append(source)
    document["sources"] = list(reversed(kept))
    return document


def source_for(document: dict[str, Any], role: str, version: RoleVersion) -> tuple[str, str] | None:
    """(package digest, configuration text) that first produced ``version`` of ``role``, if
    known. The first, not the latest: an upgrade whose package leaves a role's files and
    settings alone gives that role the same version, and its instances keep the spec (and the
    extracted files) they run with, so nothing recycles them."""
    key = version_key(version)
    for source in document.get("sources") or []:
        if source.get("versions", {}).get(role) == key:
            return str(source["package"]), str(source["configuration"])
    return None


# -- JSON documents --------------------------------------------------------------------------


def _endpoint_document(e: InputEndpoint) -> dict[str, Any]:
    probe = e.probe
    return {
        "name": e.name,
        "protocol": e.protocol,
        "port": e.port,
        "distribution": e.distribution,
        "idle_timeout": e.idle_timeout,
        "ignore_status": e.ignore_status,
        "probe": None
        if probe is None
        else {
            "protocol": probe.protocol,
            "path": probe.path,
            "port": probe.port,
            "interval": probe.interval,
            "timeout": probe.timeout,
        },
        "acl": [
            {
                "order": a.order,
                "action": a.action,
                "remote_subnet": a.remote_subnet,
                "description": a.description,
            }
            for a in e.acl
        ],
    }


def _endpoint_from_document(e: dict[str, Any]) -> InputEndpoint:
    """An endpoint from the store; documents written before policies existed get the defaults."""
    p = e.get("probe")
    probe = (
        None
        if p is None
        else ProbeRule(
            str(p["protocol"]),
            p.get("path"),
            None if p.get("port") is None else int(p["port"]),
            float(p.get("interval", 15.0)),
            float(p.get("timeout", 31.0)),
        )
    )
    return InputEndpoint(
        str(e["name"]),
        str(e["protocol"]),
        int(e["port"]),
        distribution=str(e.get("distribution", "fiveTuple")),
        idle_timeout=float(e.get("idle_timeout", 240.0)),
        ignore_status=bool(e.get("ignore_status", False)),
        probe=probe,
        acl=tuple(
            AclRule(
                int(a["order"]), str(a["action"]), str(a["remote_subnet"]), a.get("description", "")
            )
            for a in e.get("acl", [])
        ),
    )


def to_document(dep: DesiredDeployment) -> dict[str, Any]:
    walk = dep.walk
    return {
        "running": dep.running,
        "update_domain_count": dep.update_domain_count,
        "roles": [
            {
                "name": r.name,
                "indices": list(r.indices),
                "version": {"code": r.version.code, "settings": r.version.settings},
                "input_endpoints": [_endpoint_document(e) for e in r.input_endpoints],
                "has_internal_endpoints": r.has_internal_endpoints,
            }
            for r in dep.roles
        ],
        "walk": None
        if walk is None
        else {
            "kind": walk.kind.value,
            "mode": walk.mode.value,
            "domain": walk.domain,
            "state": walk.state.value,
            "domain_started_at": walk.domain_started_at,
            "previous": {
                k: {"code": v.code, "settings": v.settings}
                for k, v in sorted(walk.previous.items())
            },
            "instance_timeout": walk.instance_timeout,
            "force": walk.force,
        },
    }


def from_document(
    doc: dict[str, Any], *, deployment_id: str, service: str, slot: str, revision: int
) -> DesiredDeployment:
    try:
        roles = tuple(
            DesiredRole(
                name=r["name"],
                indices=tuple(int(i) for i in r["indices"]),
                version=RoleVersion(r["version"]["code"], r["version"]["settings"]),
                input_endpoints=tuple(
                    _endpoint_from_document(e) for e in r.get("input_endpoints", [])
                ),
                has_internal_endpoints=bool(r.get("has_internal_endpoints", False)),
            )
            for r in doc["roles"]
        )
        w = doc.get("walk")
        walk = None
        if w is not None:
            walk = Walk(
                kind=WalkKind(w["kind"]),
                mode=UpgradeMode(w["mode"]),
                domain=int(w["domain"]),
                state=DomainState(w["state"]),
                domain_started_at=float(w["domain_started_at"]),
                previous={
                    k: RoleVersion(v["code"], v["settings"]) for k, v in w["previous"].items()
                },
                instance_timeout=float(w["instance_timeout"]),
                force=bool(w["force"]),
            )
        return DesiredDeployment(
            id=deployment_id,
            service=service,
            slot=Slot(slot),
            running=bool(doc["running"]),
            update_domain_count=int(doc["update_domain_count"]),
            roles=roles,
            walk=walk,
            revision=revision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"The stored document of deployment {deployment_id} cannot be read ({exc!r})."
        ) from exc
