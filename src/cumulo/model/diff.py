"""Classify the difference between two versions of a service (reference §4.3).

``diff(old, new)`` returns a ``ServiceDiff``: one ``Change`` per difference, each with its
``Impact`` — applied in place with no restart, in place with a recycle of named roles, or only
by a new deployment — and whether it still allows a VIP swap between the two versions. Upgrades
print ``ServiceDiff.explain()`` so that what they do explains itself.

Rules (Azure's table, and where cumulo decides):

- new deployment only: a changed ``upgradeDomainCount``; a LocalStorage that shrinks.
- recycle of the role: vmsize (local data is lost), a LocalStorage that grows or is added or
  removed, endpoints added/removed/changed, certificates declared or their thumbprints changed
  (Azure always takes certificate changes offline), anything else in the role's definition
  (startup tasks, runtime, sites, contents, imports, declared setting names), and roles whose
  code changed (``code_changed`` — the caller compares package digests).
- recycle of every role: osFamily / osVersion (a new guest OS image).
- in place, no restart: instance counts (a topology change every role hears about), setting
  values (a ``Changing`` event), roles added or removed, probes, network traffic rules and the
  cscfg's NetworkConfiguration (LB/ACL state), the service's schemaVersion.

VIP swap is refused when the number or type (kind, protocol) of any role's endpoints differs, or
an input endpoint's public port changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Protocol

from cumulo.model.configuration import ServiceConfiguration
from cumulo.model.definition import Role, RoleKind, ServiceDefinition


class Impact(IntEnum):
    """How a change can be applied, ordered from least to most disruptive."""

    IN_PLACE = 1
    RECYCLE = 2
    NEW_DEPLOYMENT = 3

    @property
    def label(self) -> str:
        """``in-place``, ``recycle`` or ``new-deployment``."""
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True)
class Change:
    """One difference: a sentence, its impact, the roles it recycles, and whether it still
    allows a VIP swap."""

    description: str
    impact: Impact
    roles: tuple[str, ...] = ()
    allows_vip_swap: bool = True
    needs_force: bool = False
    """Azure applies it in place only with the upgrade's ``Force`` flag (a vmsize change, which
    loses the instances' local data on Azure)."""


class _Model(Protocol):
    @property
    def definition(self) -> ServiceDefinition: ...

    @property
    def configuration(self) -> ServiceConfiguration: ...


@dataclass(frozen=True)
class ServiceDiff:
    """All changes between two versions of a service."""

    changes: tuple[Change, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def impact(self) -> Impact | None:
        """The most disruptive impact, or None when nothing changed."""
        return max((c.impact for c in self.changes), default=None)

    @property
    def recycle_roles(self) -> tuple[str, ...]:
        """Roles whose instances must restart for an in-place update, sorted."""
        return tuple(
            sorted({r for c in self.changes if c.impact is Impact.RECYCLE for r in c.roles})
        )

    @property
    def allows_in_place(self) -> bool:
        """True unless some change needs a new deployment."""
        return all(c.impact is not Impact.NEW_DEPLOYMENT for c in self.changes)

    @property
    def allows_vip_swap(self) -> bool:
        """True unless the endpoints differ in number or type (Azure refuses such a swap)."""
        return all(c.allows_vip_swap for c in self.changes)

    def explain(self) -> list[str]:
        """One line per change: ``[impact] description (recycles: roles)``."""
        out = []
        for c in self.changes:
            tail = f" (recycles {', '.join(c.roles)})" if c.impact is Impact.RECYCLE else ""
            swap = "" if c.allows_vip_swap else "; no VIP swap"
            out.append(f"[{c.impact.label}] {c.description}{tail}{swap}")
        return out


def _endpoint_shape(role: Role) -> Counter[tuple[str, str]]:
    shape: Counter[tuple[str, str]] = Counter()
    for e in role.input_endpoints:
        shape[("input", e.protocol.value)] += 1
    for i in role.internal_endpoints:
        shape[("internal", i.protocol.value)] += 1
    for x in role.instance_input_endpoints:
        shape[("instance-input", x.protocol.value)] += 1
    return shape


def _strip(role: Role) -> Role:
    """The role without the parts compared separately (what's left is 'other definition')."""
    return replace(
        role,
        kind=RoleKind.WORKER,
        vmsize="",
        input_endpoints=(),
        internal_endpoints=(),
        instance_input_endpoints=(),
        local_storage=(),
        certificates=(),
    )


def diff(old: _Model, new: _Model, *, code_changed: Iterable[str] = ()) -> ServiceDiff:
    """Classify every change from ``old`` to ``new`` (each has ``definition`` and
    ``configuration``, e.g. a ``Service``). ``code_changed`` names roles whose files changed."""
    changes: list[Change] = []
    od, nd = old.definition, new.definition
    oc, nc = old.configuration, new.configuration
    if od.upgrade_domain_count != nd.upgrade_domain_count:
        changes.append(
            Change(
                f"upgradeDomainCount changes from {od.upgrade_domain_count} to "
                f"{nd.upgrade_domain_count}",
                Impact.NEW_DEPLOYMENT,
            )
        )
    if od.name != nd.name:
        changes.append(
            Change(f"service name changes from '{od.name}' to '{nd.name}'", Impact.NEW_DEPLOYMENT)
        )
    if (od.topology_change_discovery, od.schema_version) != (
        nd.topology_change_discovery,
        nd.schema_version,
    ):
        changes.append(Change("topologyChangeDiscovery or schemaVersion changes", Impact.IN_PLACE))
    if od.load_balancer_probes != nd.load_balancer_probes:
        changes.append(Change("load balancer probes change", Impact.IN_PLACE))
    if od.network_traffic_rules != nd.network_traffic_rules:
        changes.append(Change("network traffic rules change", Impact.IN_PLACE))
    old_roles = {r.name: r for r in od.roles}
    new_roles = {r.name: r for r in nd.roles}
    for name in old_roles.keys() - new_roles.keys():
        changes.append(
            Change(
                f"role '{name}' is removed",
                Impact.IN_PLACE,
                allows_vip_swap=not _endpoint_shape(old_roles[name]),
            )
        )
    for name in new_roles.keys() - old_roles.keys():
        changes.append(
            Change(
                f"role '{name}' is added",
                Impact.IN_PLACE,
                allows_vip_swap=not _endpoint_shape(new_roles[name]),
            )
        )
    code = set(code_changed)
    for name in [r.name for r in nd.roles if r.name in old_roles]:
        changes += _role_changes(old_roles[name], new_roles[name], name in code)
    if (oc.os_family, oc.os_version) != (nc.os_family, nc.os_version):
        changes.append(
            Change(
                f"guest OS changes from family {oc.os_family} version {oc.os_version} to "
                f"family {nc.os_family} version {nc.os_version}",
                Impact.RECYCLE,
                tuple(sorted(new_roles)),
            )
        )
    for rc in nc.roles:
        before = oc.role(rc.name)
        if before is None or rc.name not in old_roles:
            continue
        if before.instances != rc.instances:
            changes.append(
                Change(
                    f"role '{rc.name}' instances change from {before.instances} to {rc.instances}",
                    Impact.IN_PLACE,
                    (rc.name,),
                )
            )
        old_values, new_values = before.setting_values, rc.setting_values
        changed = sorted(
            k
            for k in old_values.keys() | new_values.keys()
            if old_values.get(k) != new_values.get(k)
        )
        if changed:
            changes.append(
                Change(
                    f"role '{rc.name}' settings change: {', '.join(changed)}",
                    Impact.IN_PLACE,
                    (rc.name,),
                )
            )
        if {(c.name, c.thumbprint.upper()) for c in before.certificates} != {
            (c.name, c.thumbprint.upper()) for c in rc.certificates
        }:
            changes.append(
                Change(
                    f"role '{rc.name}' certificate thumbprints change", Impact.RECYCLE, (rc.name,)
                )
            )
        if before.vm_name != rc.vm_name:
            changes.append(Change(f"role '{rc.name}' vmName changes", Impact.IN_PLACE, (rc.name,)))
    if oc.network != nc.network:
        changes.append(Change("network configuration changes", Impact.IN_PLACE))
    return ServiceDiff(tuple(changes))


def _role_changes(o: Role, n: Role, code_changed: bool) -> list[Change]:
    name = n.name
    out: list[Change] = []
    if o.kind is not n.kind:
        out.append(
            Change(
                f"role '{name}' changes from {o.kind.value} to {n.kind.value}",
                Impact.NEW_DEPLOYMENT,
                (name,),
            )
        )
    if o.vmsize != n.vmsize:
        out.append(
            Change(
                f"role '{name}' vmsize changes from {o.vmsize} to {n.vmsize} (local data is lost)",
                Impact.RECYCLE,
                (name,),
                needs_force=True,
            )
        )
    if (o.input_endpoints, o.internal_endpoints, o.instance_input_endpoints) != (
        n.input_endpoints,
        n.internal_endpoints,
        n.instance_input_endpoints,
    ):
        same_shape = _endpoint_shape(o) == _endpoint_shape(n)
        same_ports = sorted(e.port for e in o.input_endpoints) == sorted(
            e.port for e in n.input_endpoints
        )
        out.append(
            Change(
                f"role '{name}' endpoints change",
                Impact.RECYCLE,
                (name,),
                allows_vip_swap=same_shape and same_ports,
            )
        )
    old_ls = {ls.name: ls for ls in o.local_storage}
    new_ls = {ls.name: ls for ls in n.local_storage}
    for key in sorted(old_ls.keys() | new_ls.keys()):
        a, b = old_ls.get(key), new_ls.get(key)
        if a == b:
            continue
        if a is not None and b is not None and b.size_mb < a.size_mb:
            out.append(
                Change(
                    f"role '{name}' LocalStorage '{key}' shrinks from {a.size_mb} to "
                    f"{b.size_mb} MB",
                    Impact.NEW_DEPLOYMENT,
                    (name,),
                )
            )
        else:
            verb = "is added" if a is None else "is removed" if b is None else "changes"
            out.append(
                Change(f"role '{name}' LocalStorage '{key}' {verb}", Impact.RECYCLE, (name,))
            )
    if o.certificates != n.certificates:
        out.append(Change(f"role '{name}' certificates change", Impact.RECYCLE, (name,)))
    if _strip(o) != _strip(n):
        out.append(
            Change(
                f"role '{name}' definition changes (tasks, runtime, sites, settings or contents)",
                Impact.RECYCLE,
                (name,),
            )
        )
    if code_changed:
        out.append(Change(f"role '{name}' code changes", Impact.RECYCLE, (name,)))
    return out
