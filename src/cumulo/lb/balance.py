"""Which backend gets a new connection: eligibility and the distribution modes, all pure.

Why pure: "a flow always lands on the same Ready instance while the set is unchanged" and "an
instance out of rotation never gets a new connection" are properties of these functions alone,
so they are tested with Hypothesis; the proxy only calls ``choose``.

Distribution modes (``loadBalancerDistribution``):

- ``fiveTuple`` (Azure's default): hash of source IP, source port, destination IP, destination
  port and protocol. On a TCP proxy every new connection has a new source port, so connections
  spread evenly.
- ``sourceIP`` (Azure's 2-tuple): source IP and destination IP; one client sticks to one instance.
- ``sourceIPProtocol`` (Azure's 3-tuple): source IP, destination IP and protocol.
- ``roundRobin`` and ``leastConnections``: cumulo extensions (documented in docs/networking.md).

Hashing is rendezvous (highest random weight): each candidate scores ``blake2b(flow, backend)``
and the best score wins. A flow keeps its backend while that backend stays eligible, and when a
backend leaves only the flows that were on it move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from cumulo.lb.routes import Backend, Endpoint

BackendKey = tuple[str, str, int]
DISTRIBUTIONS_HASHED = ("fiveTuple", "sourceIP", "sourceIPProtocol")


class Flow(NamedTuple):
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: str = "tcp"


def flow_key(distribution: str, flow: Flow) -> bytes:
    """The bytes hashed for a flow under a distribution mode."""
    if distribution == "sourceIP":
        return f"{flow.src_ip}|{flow.dst_ip}".encode()
    if distribution == "sourceIPProtocol":
        return f"{flow.src_ip}|{flow.dst_ip}|{flow.protocol}".encode()
    return f"{flow.src_ip}|{flow.src_port}|{flow.dst_ip}|{flow.dst_port}|{flow.protocol}".encode()


def backend_id(backend: Backend) -> bytes:
    return backend.hash_id


def score(key: bytes, bid: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key + b"#" + bid, digest_size=8).digest(), "big")


def is_eligible(endpoint: Endpoint, backend: Backend, probe_up: bool | None) -> bool:
    """May ``backend`` get new connections of ``endpoint``?

    With a custom probe the probe decides (``probe_up``; unknown counts as down). Without one the
    default probe applies: the controller's ``routable`` flag (the guest agent's Ready status),
    unless ``ignoreRoleInstanceStatus`` is set on the endpoint or the backend.
    """
    if endpoint.probe is not None:
        return probe_up is True
    return (
        backend.routable
        or backend.ignore_role_instance_status
        or endpoint.ignore_role_instance_status
    )


def choose(
    distribution: str,
    candidates: Sequence[Backend],
    flow: Flow,
    *,
    turn: int = 0,
    active: Mapping[BackendKey, int] | None = None,
) -> Backend | None:
    """The backend for a new connection among ``candidates`` (already eligible), or None.

    ``turn`` is the endpoint's round-robin counter; ``active`` the open connections per backend
    (for ``leastConnections``).
    """
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if distribution == "roundRobin":
        return candidates[turn % len(candidates)]
    key = flow_key(distribution, flow)
    pool = candidates
    if distribution == "leastConnections":
        counts = active or {}
        least = min(counts.get(b.key, 0) for b in candidates)
        pool = [b for b in candidates if counts.get(b.key, 0) == least]
        if len(pool) == 1:
            return pool[0]
    return max(pool, key=lambda b: score(key, b.hash_id))
