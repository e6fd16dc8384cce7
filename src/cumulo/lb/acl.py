"""EndpointAcls evaluated at accept: ordered permit/deny rules over remote IPv4 subnets.

Why a compiled form: the check runs on every accepted connection, so the rules become integers
(network, mask, permit) once per route-table change and each check is a few integer operations.

Semantics (Azure's endpoint ACLs): rules are tried in ascending ``order``; the first rule whose
subnet contains the remote address decides. When no rule matches, the connection is denied if
the list holds at least one ``permit`` rule (a permit list is an allow-list) and allowed if it
holds only ``deny`` rules (a block-list). No rules at all: everyone is allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from cumulo.lb.routes import AclRule


@dataclass(frozen=True)
class CompiledAcl:
    rules: tuple[tuple[int, int, bool], ...]  # (network, mask, permit) in evaluation order
    default_permit: bool

    def allows(self, remote_ip: str) -> bool:
        """Whether a connection from ``remote_ip`` may pass; non-IPv4 addresses match no rule."""
        try:
            addr = int.from_bytes(socket.inet_aton(remote_ip), "big")
        except OSError:
            return self.default_permit
        for net, mask, permit in self.rules:
            if addr & mask == net:
                return permit
        return self.default_permit


def compile_acl(rules: Iterable[AclRule]) -> CompiledAcl | None:
    """The compiled ACL, or ``None`` when there are no rules (everyone is allowed)."""
    ordered = sorted(rules, key=lambda r: r.order)
    if not ordered:
        return None
    compiled = []
    for rule in ordered:
        net = ipaddress.IPv4Network(rule.remote_subnet, strict=False)
        compiled.append((int(net.network_address), int(net.netmask), rule.action == "permit"))
    has_permit = any(permit for _, _, permit in compiled)
    return CompiledAcl(tuple(compiled), default_permit=not has_permit)
