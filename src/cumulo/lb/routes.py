"""The route table: what the fabric controller pushes to the load balancer, as typed values.

Why: the load balancer only forwards. Every decision (which instances exist, which are Ready, which
deployment sits in which slot) is the controller's; it arrives here as one JSON document, is
checked in full (every problem reported at once, each a sentence naming the JSON path and value)
and becomes an immutable ``RouteTable``. The proxy reads the current table on every accept, so
replacing or swapping the table is one reference assignment: atomic for the event loop.

JSON schema (version 1) — ``PUT /v1/routes`` on the LB API (see ``cumulo.lb.api``) and
docs/networking.md::

    {
      "version": 12,                 # generation set by the controller; a PUT with a version
                                     # lower than the current one is refused (409)
      "drainTimeoutSeconds": 30,     # optional (default 30): how long connections on an instance
                                     # taken out of rotation may stay open before they are closed
      "slots": {                     # "production" and/or "staging"; a missing slot = empty
        "production": {
          "address": "127.0.0.1",    # the slot's VIP (IPv4). Default: production 127.0.0.1,
                                     # staging 127.0.0.2 (same public ports, distinct addresses)
          "deployment": "d-7f3a",    # optional, informational (shown in metrics and routes)
          "endpoints": {             # InputEndpoints only; internal endpoints never appear here
            "Http": {
              "kind": "input",       # optional; anything else (e.g. "internal") is refused
              "role": "WebRole1",    # optional, informational
              "publicPort": 80,      # 1-65535, or 0 = any free port (tests); when taken the LB
                                     # walks to the next free port (privileged and refused:
                                     # port + 8000) and reports the real one
              "protocol": "http",    # tcp | http | https (all proxied at L4); udp is refused
              "distribution": "fiveTuple",  # fiveTuple (default) | sourceIP | sourceIPProtocol |
                                     # roundRobin | leastConnections (the last two: extensions)
              "idleTimeoutSeconds": 240,    # optional (default 240 = Azure's 4 min)
              "ignoreRoleInstanceStatus": false,  # true: route even to backends not routable
              "acl": [               # optional EndpointAcl rules; lower order is evaluated first
                {"order": 100, "action": "permit", "remoteSubnet": "10.0.0.0/8",
                 "description": "office"}
              ],
              "probe": {             # optional custom LoadBalancerProbe, run by the LB itself
                "protocol": "http",  # http (200 from path) | tcp (connect succeeds)
                "path": "/health",   # required for http, forbidden for tcp
                "port": 8080,        # optional: port on the instance (default: backend port)
                "intervalSeconds": 15, "timeoutSeconds": 31
              },
              "backends": [
                {"instance": "WebRole1_IN_0", "address": "127.0.0.1", "port": 20000,
                 "routable": true,   # the default probe: the controller sets it from the guest
                                     # agent's Ready status (ReadyRole = true)
                 "ignoreRoleInstanceStatus": false}  # optional per-backend override (OR-ed)
              ]
            }
          },
          "instanceInputEndpoints": {      # each instance has its own public port (1:1)
            "Rdp": {
              "role": "WorkerRole1", "protocol": "tcp", "idleTimeoutSeconds": 240, "acl": [],
              "instances": [
                {"instance": "WorkerRole1_IN_0", "publicPort": 10100,
                 "address": "127.0.0.1", "port": 3389}
              ]
            }
          }
        },
        "staging": { ... same shape ... }
      }
    }

Swap (``POST /v1/swap``) exchanges everything in the two slots except their ``address``: the
production VIP then serves what staging served and the other way round. Listeners are keyed by
(slot, endpoint name, public port), so when both slots declare the same endpoints no listener
opens or closes during a swap, and open connections stay on the backend they were relayed to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from cumulo.errors import InputError

SLOTS: Final = ("production", "staging")
DEFAULT_ADDRESSES: Final[Mapping[str, str]] = {"production": "127.0.0.1", "staging": "127.0.0.2"}
PROTOCOLS: Final = ("tcp", "http", "https")
DISTRIBUTIONS: Final = (
    "fiveTuple",
    "sourceIP",
    "sourceIPProtocol",
    "roundRobin",
    "leastConnections",
)
DEFAULT_IDLE_TIMEOUT: Final = 240.0
DEFAULT_DRAIN_TIMEOUT: Final = 30.0

Slot = Literal["production", "staging"]
Distribution = Literal[
    "fiveTuple", "sourceIP", "sourceIPProtocol", "roundRobin", "leastConnections"
]


class RouteTableError(InputError):
    """A route table the load balancer cannot use; lists every problem, one sentence each."""

    code = "InvalidRouteTable"

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class AclRule:
    order: int
    action: Literal["permit", "deny"]
    remote_subnet: str
    description: str = ""


@dataclass(frozen=True)
class Probe:
    protocol: Literal["tcp", "http"]
    path: str | None = None
    port: int | None = None
    interval: float = 15.0
    timeout: float = 31.0


@dataclass(frozen=True)
class Backend:
    instance: str
    address: str
    port: int
    routable: bool = True
    ignore_role_instance_status: bool = False
    hash_id: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        # what the distribution hashes with a flow (precomputed: it is used on every accept)
        object.__setattr__(self, "hash_id", f"{self.instance}|{self.address}|{self.port}".encode())

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity across table updates (stats, open connections and drains follow it)."""
        return (self.instance, self.address, self.port)


@dataclass(frozen=True)
class Endpoint:
    name: str
    public_port: int
    protocol: str = "tcp"
    distribution: Distribution = "fiveTuple"
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    ignore_role_instance_status: bool = False
    acl: tuple[AclRule, ...] = ()
    probe: Probe | None = None
    backends: tuple[Backend, ...] = ()
    role: str = ""


@dataclass(frozen=True)
class InstancePort:
    instance: str
    public_port: int
    address: str
    port: int


@dataclass(frozen=True)
class InstanceInputEndpoint:
    name: str
    protocol: str = "tcp"
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    acl: tuple[AclRule, ...] = ()
    instances: tuple[InstancePort, ...] = ()
    role: str = ""


@dataclass(frozen=True)
class SlotTable:
    address: str
    deployment: str = ""
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    instance_endpoints: Mapping[str, InstanceInputEndpoint] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteTable:
    version: int
    drain_timeout: float
    slots: Mapping[str, SlotTable]

    def slot(self, name: str) -> SlotTable:
        return self.slots[name]


def empty_table(addresses: Mapping[str, str] | None = None) -> RouteTable:
    """The table a fresh load balancer starts with: both VIPs, no endpoints."""
    addrs = {**DEFAULT_ADDRESSES, **(addresses or {})}
    return RouteTable(0, DEFAULT_DRAIN_TIMEOUT, {s: SlotTable(addrs[s]) for s in SLOTS})


def swapped(table: RouteTable, version: int | None = None) -> RouteTable:
    """The table with the production and staging contents exchanged; each VIP keeps its address."""
    prod, stag = table.slots["production"], table.slots["staging"]
    return RouteTable(
        version=table.version + 1 if version is None else version,
        drain_timeout=table.drain_timeout,
        slots={
            "production": replace(stag, address=prod.address),
            "staging": replace(prod, address=stag.address),
        },
    )


# ---------------------------------------------------------------------------------------------
# parsing (JSON -> RouteTable), collecting every problem


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def obj(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a JSON object, got {_show(value)}.")
            return {}
        return value

    def lst(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a JSON array, got {_show(value)}.")
            return []
        return value

    def string(self, value: Any, path: str, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {_show(value)}.")
            return default or ""
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_show(value)}.")
            return default
        return value

    def port(self, value: Any, path: str, *, allow_zero: bool) -> int:
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
            extra = ", or 0 for any free port" if allow_zero else ""
            self.fail(path, f"{_show(value)} is not a port (1-65535{extra}).")
            return 0
        return value

    def seconds(self, value: Any, path: str, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.fail(path, f"expected a positive number of seconds, got {_show(value)}.")
            return default
        return float(value)

    def ipv4(self, value: Any, path: str, default: str) -> str:
        text = self.string(value, path, default)
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            self.fail(path, f"{_show(text)} is not an IPv4 address.")
        return text


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_acl(c: _Checker, raw: Any, path: str) -> tuple[AclRule, ...]:
    rules: list[AclRule] = []
    orders: set[int] = set()
    for i, item in enumerate(c.lst(raw, path)):
        p = f"{path}[{i}]"
        r = c.obj(item, p)
        order = r.get("order", i)
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            c.fail(f"{p}.order", f"expected a non-negative integer, got {_show(order)}.")
            order = i
        elif order in orders:
            c.fail(f"{p}.order", f"order {order} is used by two rules; orders must be unique.")
        orders.add(order)
        action = str(r.get("action", "")).lower()
        if action not in ("permit", "deny"):
            c.fail(f"{p}.action", f"{_show(r.get('action'))} is not 'permit' or 'deny'.")
            action = "deny"
        subnet = c.string(r.get("remoteSubnet"), f"{p}.remoteSubnet")
        try:
            subnet = str(ipaddress.IPv4Network(subnet, strict=False))
        except ValueError:
            c.fail(f"{p}.remoteSubnet", f"{_show(subnet)} is not an IPv4 subnet like 10.0.0.0/8.")
        desc = r.get("description") or ""
        rules.append(AclRule(order, action, subnet, str(desc)))  # type: ignore[arg-type]
    return tuple(sorted(rules, key=lambda rule: rule.order))


def _parse_probe(c: _Checker, raw: Any, path: str) -> Probe | None:
    if raw is None:
        return None
    r = c.obj(raw, path)
    proto = str(r.get("protocol", "")).lower()
    p_path = r.get("path")
    if proto not in ("tcp", "http"):
        c.fail(f"{path}.protocol", f"{_show(r.get('protocol'))} is not 'tcp' or 'http'.")
        proto = "tcp"
    if proto == "http":
        if not isinstance(p_path, str) or not p_path.startswith("/"):
            c.fail(
                f"{path}.path",
                f"an http probe needs a path starting with '/', got {_show(p_path)}.",
            )
            p_path = "/"
    elif p_path is not None:
        c.fail(f"{path}.path", "a tcp probe takes no path.")
        p_path = None
    port = (
        None if r.get("port") is None else c.port(r.get("port"), f"{path}.port", allow_zero=False)
    )
    interval = c.seconds(r.get("intervalSeconds"), f"{path}.intervalSeconds", 15.0)
    timeout = c.seconds(r.get("timeoutSeconds"), f"{path}.timeoutSeconds", 31.0)
    return Probe(proto, p_path, port, interval, timeout)  # type: ignore[arg-type]


def _parse_protocol(c: _Checker, raw: Any, path: str, allowed: tuple[str, ...]) -> str:
    proto = str(raw if raw is not None else "tcp").lower()
    if proto == "udp":
        c.fail(
            path,
            "protocol 'udp' is not supported by the cumulo load balancer (it proxies TCP only); "
            "use tcp, or leave the endpoint out.",
        )
    elif proto not in allowed:
        c.fail(path, f"{_show(raw)} is not one of {', '.join(allowed)}.")
    return proto


def _parse_endpoint(c: _Checker, name: str, raw: Any, path: str) -> Endpoint:
    r = c.obj(raw, path)
    kind = r.get("kind", "input")
    if kind != "input":
        c.fail(
            f"{path}.kind",
            f"{_show(kind)}: only input endpoints go on a VIP; internal endpoints are reached "
            "directly between instances and never exposed by the load balancer.",
        )
    dist = r.get("distribution", "fiveTuple")
    if dist not in DISTRIBUTIONS:
        c.fail(f"{path}.distribution", f"{_show(dist)} is not one of {', '.join(DISTRIBUTIONS)}.")
        dist = "fiveTuple"
    backends: list[Backend] = []
    seen: set[tuple[str, str, int]] = set()
    for i, item in enumerate(c.lst(r.get("backends"), f"{path}.backends")):
        bp = f"{path}.backends[{i}]"
        b = c.obj(item, bp)
        backend = Backend(
            instance=c.string(b.get("instance"), f"{bp}.instance"),
            address=c.ipv4(b.get("address"), f"{bp}.address", "127.0.0.1"),
            port=c.port(b.get("port"), f"{bp}.port", allow_zero=False),
            routable=c.boolean(b.get("routable"), f"{bp}.routable", True),
            ignore_role_instance_status=c.boolean(
                b.get("ignoreRoleInstanceStatus"), f"{bp}.ignoreRoleInstanceStatus", False
            ),
        )
        if backend.key in seen:
            c.fail(
                bp,
                f"backend {backend.instance} at {backend.address}:{backend.port} is listed twice.",
            )
        seen.add(backend.key)
        backends.append(backend)
    return Endpoint(
        name=name,
        public_port=c.port(r.get("publicPort"), f"{path}.publicPort", allow_zero=True),
        protocol=_parse_protocol(c, r.get("protocol"), f"{path}.protocol", PROTOCOLS),
        distribution=dist,
        idle_timeout=c.seconds(
            r.get("idleTimeoutSeconds"), f"{path}.idleTimeoutSeconds", DEFAULT_IDLE_TIMEOUT
        ),
        ignore_role_instance_status=c.boolean(
            r.get("ignoreRoleInstanceStatus"), f"{path}.ignoreRoleInstanceStatus", False
        ),
        acl=_parse_acl(c, r.get("acl"), f"{path}.acl"),
        probe=_parse_probe(c, r.get("probe"), f"{path}.probe"),
        backends=tuple(backends),
        role=str(r.get("role") or ""),
    )


def _parse_instance_endpoint(c: _Checker, name: str, raw: Any, path: str) -> InstanceInputEndpoint:
    r = c.obj(raw, path)
    instances: list[InstancePort] = []
    for i, item in enumerate(c.lst(r.get("instances"), f"{path}.instances")):
        ip = f"{path}.instances[{i}]"
        b = c.obj(item, ip)
        instances.append(
            InstancePort(
                instance=c.string(b.get("instance"), f"{ip}.instance"),
                public_port=c.port(b.get("publicPort"), f"{ip}.publicPort", allow_zero=True),
                address=c.ipv4(b.get("address"), f"{ip}.address", "127.0.0.1"),
                port=c.port(b.get("port"), f"{ip}.port", allow_zero=False),
            )
        )
    nonzero = [p.public_port for p in instances if p.public_port]
    if len(nonzero) != len(set(nonzero)):
        c.fail(f"{path}.instances", "two instances share a publicPort; each needs its own.")
    return InstanceInputEndpoint(
        name=name,
        protocol=_parse_protocol(c, r.get("protocol"), f"{path}.protocol", ("tcp",)),
        idle_timeout=c.seconds(
            r.get("idleTimeoutSeconds"), f"{path}.idleTimeoutSeconds", DEFAULT_IDLE_TIMEOUT
        ),
        acl=_parse_acl(c, r.get("acl"), f"{path}.acl"),
        instances=tuple(instances),
        role=str(r.get("role") or ""),
    )


def parse_table(raw: Any, defaults: Mapping[str, str] | None = None) -> RouteTable:
    """Check a route table document in full; raise ``RouteTableError`` listing every problem."""
    c = _Checker()
    addrs = {**DEFAULT_ADDRESSES, **(defaults or {})}
    doc = c.obj(raw, "routes")
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        c.fail("routes.version", f"expected a non-negative integer, got {_show(version)}.")
        version = 0
    drain = c.seconds(
        doc.get("drainTimeoutSeconds"), "routes.drainTimeoutSeconds", DEFAULT_DRAIN_TIMEOUT
    )
    raw_slots = c.obj(doc.get("slots", {}), "routes.slots")
    for extra in sorted(set(raw_slots) - set(SLOTS)):
        c.fail(f"routes.slots.{extra}", "unknown slot; the slots are 'production' and 'staging'.")
    slots: dict[str, SlotTable] = {}
    for slot in SLOTS:
        sp = f"routes.slots.{slot}"
        s = c.obj(raw_slots.get(slot) or {}, sp)
        endpoints = {
            name: _parse_endpoint(c, name, ep, f"{sp}.endpoints.{name}")
            for name, ep in c.obj(s.get("endpoints") or {}, f"{sp}.endpoints").items()
        }
        inst = {
            name: _parse_instance_endpoint(c, name, ep, f"{sp}.instanceInputEndpoints.{name}")
            for name, ep in c.obj(
                s.get("instanceInputEndpoints") or {}, f"{sp}.instanceInputEndpoints"
            ).items()
        }
        ports = [e.public_port for e in endpoints.values() if e.public_port] + [
            p.public_port for e in inst.values() for p in e.instances if p.public_port
        ]
        dup = sorted({p for p in ports if ports.count(p) > 1})
        if dup:
            c.fail(sp, f"public port(s) {', '.join(map(str, dup))} used by more than one endpoint.")
        slots[slot] = SlotTable(
            address=c.ipv4(s.get("address"), f"{sp}.address", addrs[slot]),
            deployment=str(s.get("deployment") or ""),
            endpoints=endpoints,
            instance_endpoints=inst,
        )
    if c.problems:
        raise RouteTableError(c.problems)
    return RouteTable(version, drain, slots)


# ---------------------------------------------------------------------------------------------
# RouteTable -> JSON (the inverse of parse_table; what GET /v1/routes returns and the state file)


def _acl_json(rules: tuple[AclRule, ...]) -> list[dict[str, Any]]:
    return [
        {
            "order": r.order,
            "action": r.action,
            "remoteSubnet": r.remote_subnet,
            "description": r.description,
        }
        for r in rules
    ]


def table_to_json(table: RouteTable) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    for name, s in table.slots.items():
        endpoints: dict[str, Any] = {}
        for ep in s.endpoints.values():
            probe: dict[str, Any] | None = None
            if ep.probe is not None:
                probe = {
                    "protocol": ep.probe.protocol,
                    "intervalSeconds": ep.probe.interval,
                    "timeoutSeconds": ep.probe.timeout,
                }
                if ep.probe.path is not None:
                    probe["path"] = ep.probe.path
                if ep.probe.port is not None:
                    probe["port"] = ep.probe.port
            endpoints[ep.name] = {
                "role": ep.role,
                "publicPort": ep.public_port,
                "protocol": ep.protocol,
                "distribution": ep.distribution,
                "idleTimeoutSeconds": ep.idle_timeout,
                "ignoreRoleInstanceStatus": ep.ignore_role_instance_status,
                "acl": _acl_json(ep.acl),
                "probe": probe,
                "backends": [
                    {
                        "instance": b.instance,
                        "address": b.address,
                        "port": b.port,
                        "routable": b.routable,
                        "ignoreRoleInstanceStatus": b.ignore_role_instance_status,
                    }
                    for b in ep.backends
                ],
            }
        inst = {
            e.name: {
                "role": e.role,
                "protocol": e.protocol,
                "idleTimeoutSeconds": e.idle_timeout,
                "acl": _acl_json(e.acl),
                "instances": [
                    {
                        "instance": p.instance,
                        "publicPort": p.public_port,
                        "address": p.address,
                        "port": p.port,
                    }
                    for p in e.instances
                ],
            }
            for e in s.instance_endpoints.values()
        }
        slots[name] = {
            "address": s.address,
            "deployment": s.deployment,
            "endpoints": endpoints,
            "instanceInputEndpoints": inst,
        }
    return {"version": table.version, "drainTimeoutSeconds": table.drain_timeout, "slots": slots}


def with_routable(
    table: RouteTable, instance: str, routable: bool, version: int | None = None
) -> RouteTable:
    """The table with every backend of ``instance`` (in both slots) marked routable or not."""
    slots: dict[str, SlotTable] = {}
    for name, s in table.slots.items():
        eps = {
            n: replace(
                ep,
                backends=tuple(
                    replace(b, routable=routable) if b.instance == instance else b
                    for b in ep.backends
                ),
            )
            for n, ep in s.endpoints.items()
        }
        slots[name] = replace(s, endpoints=eps)
    return RouteTable(table.version + 1 if version is None else version, table.drain_timeout, slots)
