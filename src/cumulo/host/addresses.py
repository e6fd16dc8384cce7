"""Pure allocation of instance addresses (DIPs) and local ports.

Every instance gets its own loopback address (127.1.0.1, 127.1.0.2, …; the whole 127/8 is local
on Linux), so two instances may both listen on a fixed ``localPort`` as two Azure VMs can. Ports:
a fixed ``localPort`` is used as given; ``*`` is picked by the host (the kernel's choice for port 0
on that address, passed in as ``pick_free``). Nothing here touches a socket.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Iterable, Mapping

from cumulo.errors import ConflictError, InputError
from cumulo.state.spec import EndpointSpec

MAX_ADDRESSES = 254 * 255 * 254


def address_at(base: str, index: int) -> str:
    """The ``index``-th usable address after ``base`` (skipping .0 and .255 host bytes)."""
    if not 0 <= index < MAX_ADDRESSES:
        raise ValueError(f"address index {index} out of range")
    start = int(ipaddress.IPv4Address(base))
    per_c = 254  # x.y.z.1 .. x.y.z.254
    c = index % per_c + 1
    rest = index // per_c
    b = rest % 255
    a_ = rest // 255
    value = start + (a_ << 16) + (b << 8) + c
    addr = ipaddress.IPv4Address(value)
    if not addr.is_loopback:
        raise ValueError(f"address {addr} is outside 127.0.0.0/8")
    return str(addr)


def base_for_host(host_id: str) -> str:
    """The default address base of a host: ``host<N>`` -> 127.<N+1>.0.0, else by a hash."""
    digits = "".join(c for c in host_id[::-1] if c.isdigit())[::-1]
    tail = host_id[len(host_id) - len(digits) :] if digits else ""
    if tail and tail == digits and int(digits) < 250:
        return f"127.{int(digits) + 1}.0.0"
    return f"127.{zlib.crc32(host_id.encode()) % 200 + 50}.0.0"


def allocate_address(in_use: Iterable[str], base: str = "127.1.0.0") -> str:
    """The first address after ``base`` that is not in ``in_use``."""
    used = set(in_use)
    for index in range(MAX_ADDRESSES):
        candidate = address_at(base, index)
        if candidate not in used:
            return candidate
    raise ConflictError("No free instance address is left on this host.")


def assign_ports(
    instance: str,
    endpoints: Iterable[EndpointSpec],
    pick_free: Callable[[], int],
    previous: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Endpoint name -> local port for one instance (its own address, so no clash with others).

    ``previous`` keeps the ports an instance had before (a restart or recycle keeps them).
    """
    ports: dict[str, int] = {}
    owner: dict[int, str] = {}
    pending: list[EndpointSpec] = []
    for ep in endpoints:
        fixed = ep.wanted_local_port()
        if fixed is None:
            pending.append(ep)
            continue
        if not 1 <= fixed <= 65535:
            raise InputError(
                f"Endpoint '{ep.name}' of instance '{instance}' has local port {fixed}; "
                "ports are 1-65535."
            )
        if fixed in owner:
            raise InputError(
                f"Endpoints '{owner[fixed]}' and '{ep.name}' of instance '{instance}' both use "
                f"local port {fixed}."
            )
        owner[fixed] = ep.name
        ports[ep.name] = fixed
    for ep in pending:
        port = (previous or {}).get(ep.name)
        while port is None or port in owner:
            port = pick_free()
        owner[port] = ep.name
        ports[ep.name] = port
    return ports
