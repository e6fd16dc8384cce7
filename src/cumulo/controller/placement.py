"""Placement: which host a new instance goes to (pure).

Update domains are not chosen here: they follow the instance index round-robin
(``records.update_domain_of``), as Azure assigns them. Fault domains are the hosts' own: each
simulated host of ``cumulo serve --hosts N`` is its own fault domain. A new instance goes where
its role has the fewest instances *per fault domain*, then per host, then where the host carries
the fewest instances overall, then by host name, so a role's instances spread evenly over fault
domains (the counts per fault domain differ by at most one when placed from scratch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A host that may take new instances."""

    name: str
    fault_domain: int


class Placer:
    """Places instances one after another, counting what it already placed."""

    def __init__(self, hosts: Sequence[Candidate]) -> None:
        self._hosts = sorted(hosts, key=lambda h: h.name)
        self._per_host: Counter[str] = Counter()
        self._role_host: Counter[tuple[str, str, str]] = Counter()
        self._role_fd: Counter[tuple[str, str, int]] = Counter()

    def count(self, deployment_id: str, role: str, host: str, fault_domain: int) -> None:
        """Record an instance that already runs (or was just placed)."""
        self._per_host[host] += 1
        self._role_host[(deployment_id, role, host)] += 1
        self._role_fd[(deployment_id, role, fault_domain)] += 1

    def place(self, deployment_id: str, role: str) -> Candidate | None:
        """The best host for one more instance of ``role`` (None when there is no host)."""
        if not self._hosts:
            return None
        best = min(
            self._hosts,
            key=lambda h: (
                self._role_fd[(deployment_id, role, h.fault_domain)],
                self._role_host[(deployment_id, role, h.name)],
                self._per_host[h.name],
                h.name,
            ),
        )
        self.count(deployment_id, role, best.name, best.fault_domain)
        return best


def spread(fault_domains: Iterable[int], hosts: Sequence[Candidate]) -> int:
    """Largest minus smallest number of instances per fault domain among ``hosts``' domains."""
    counts = Counter(fault_domains)
    domains = {h.fault_domain for h in hosts}
    values = [counts.get(d, 0) for d in domains]
    return max(values) - min(values) if values else 0
