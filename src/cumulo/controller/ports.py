"""The controller's two outward seams, as Protocols, with HTTP JSON adapters.

The controller never imports ``cumulo.host`` or ``cumulo.lb`` (layer rule); it talks to their
processes over their documented HTTP APIs (``cumulo.host.api`` and ``cumulo.lb.api`` module
docstrings, docs/networking.md). Tests of the pure cores use in-memory fakes of these Protocols;
integration tests use the adapters against real processes.

Host agent (one per host)::

    GET  /v1/instances                        -> observed instances   (observe)
    PUT  /v1/instances {"instances": [spec…], "deployment_id"?}       (apply)
    POST /v1/instances/{dep}/{inst}/{reboot|reimage|rebuild}          (instance_action)
    PUT  /v1/deployments/{dep}/topology                               (push_topology)

Load balancer (one per service; the route table holds one service's two VIPs)::

    GET  /v1/routes  -> {"table", "bootId"}                             (get_routes)
    PUT  /v1/routes  <route table JSON>  -> listeners with addresses     (put_routes)

``route_table_json`` turns the controller's ``ServiceRoutes`` into the LB's table schema
(``cumulo.lb.routes``); ``host_view`` turns a host's observed-instance JSON into a ``HostView``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from cumulo.controller.autoscale import cpu_percent
from cumulo.controller.records import (
    HostView,
    InputEndpoint,
    InstanceUsage,
    ObservedInstance,
    RoleVersion,
    ServiceRoutes,
    SlotRoutes,
)
from cumulo.errors import (
    ConflictError,
    CumuloError,
    InputError,
    InternalError,
    NotFoundError,
    TemporaryError,
)

UNKNOWN_VERSION = RoleVersion("?", "?")


class HostAgentPort(Protocol):
    name: str
    fault_domain: int

    async def observe(self) -> list[dict[str, Any]]: ...
    async def apply(
        self, specs: Sequence[Mapping[str, Any]], *, deployment_id: str | None = None
    ) -> dict[str, list[str]]: ...
    async def instance_action(self, deployment_id: str, instance_id: str, action: str) -> None: ...
    async def push_topology(self, deployment_id: str, roles: Mapping[str, Any]) -> None: ...
    async def logs(self, deployment_id: str, instance_id: str, name: str, tail: int) -> str: ...
    async def events(self, since: int) -> list[dict[str, Any]]: ...
    async def exec(
        self, deployment_id: str, instance_id: str, argv: Sequence[str], timeout: float
    ) -> dict[str, Any]: ...
    async def prepare(self, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...


class LoadBalancerPort(Protocol):
    async def get_routes(self) -> tuple[dict[str, Any], str]: ...
    async def put_routes(self, table: Mapping[str, Any]) -> dict[str, Any]: ...


# -- pure converters -----------------------------------------------------------------------------


CPU_WINDOW = 1.0
"""The shortest time a CPU percentage is measured over (seconds)."""


def instance_usage(
    raw: Any, seen_at: float | None, before: InstanceUsage | None
) -> InstanceUsage | None:
    """The usage of a host's ``usage`` report, its CPU percentage measured from ``before``'s
    mark once ``CPU_WINDOW`` has passed (else ``before``'s percentage stands)."""
    if not isinstance(raw, Mapping):
        return None
    memory, used, cores = raw.get("memory_mb"), raw.get("cpu_seconds"), raw.get("cores", 1.0)
    memory = float(memory) if isinstance(memory, int | float) else None
    used = float(used) if isinstance(used, int | float) else None
    cores = float(cores) if isinstance(cores, int | float) and cores > 0 else 1.0
    percent, mark = None, None
    if used is not None and seen_at is not None:
        mark = (seen_at, used)
        if before is not None and before.cpu_mark is not None:
            since, then = before.cpu_mark
            if used < then:  # the counter went back: a new process; measure from here
                pass
            elif seen_at - since < CPU_WINDOW:
                percent, mark = before.cpu_percent, before.cpu_mark
            else:
                percent = cpu_percent(used - then, seen_at - since, cores)
    return InstanceUsage(memory, used, cores, percent, mark)


def host_view(
    name: str,
    fault_domain: int,
    instances: Sequence[Mapping[str, Any]],
    *,
    seen_at: float | None,
    versions: Mapping[str, RoleVersion],
    previous: HostView | None = None,
) -> HostView:
    """A ``HostView`` from a host agent's observed instances.

    The host reports no version; ``versions`` (instance key -> the version of the spec this
    controller last gave the host for it) fills it in, ``UNKNOWN_VERSION`` when there is none.
    ``previous`` (this host's last view) is what CPU percentages are measured from.
    """
    before = {i.key: i.usage for i in previous.instances} if previous is not None else {}
    out: list[ObservedInstance] = []
    for raw in instances:
        key = str(raw.get("key") or f"{raw.get('deployment_id')}/{raw.get('instance_id')}")
        endpoints = tuple(
            (str(e["name"]), f"{e['address']}:{e['local_port']}")
            for e in raw.get("endpoints", [])
            if e.get("kind", "input") == "input" and e.get("local_port") and e.get("address")
        )
        out.append(
            ObservedInstance(
                deployment_id=str(raw["deployment_id"]),
                instance_id=str(raw["instance_id"]),
                role=str(raw["role"]),
                host=name,
                status=str(raw.get("state", "RoleStateUnknown")),
                version=versions.get(key, UNKNOWN_VERSION),
                update_domain=int(raw.get("update_domain", 0)),
                fault_domain=int(raw.get("fault_domain", fault_domain)),
                since=float(raw.get("since") or 0.0),
                sdk_connected=bool(raw.get("sdk_connected", False)),
                endpoints=endpoints,
                detail=str(raw.get("detail") or ""),
                restarts=int(raw.get("restarts") or 0),
                usage=instance_usage(raw.get("usage"), seen_at, before.get(key)),
            )
        )
    return HostView(name, fault_domain, seen_at, tuple(out))


def _slot_json(routes: SlotRoutes | None, address: str | None) -> dict[str, Any]:
    slot: dict[str, Any] = {"endpoints": {}}
    if address is not None:
        slot["address"] = address
    if routes is None:
        return slot
    slot["deployment"] = routes.deployment_id
    for endpoint in routes.endpoints:
        backends = []
        for b in endpoint.backends:
            host, _, port = b.address.rpartition(":")
            backends.append(
                {
                    "instance": b.instance_id,
                    "address": host,
                    "port": int(port),
                    "routable": b.routable,
                }
            )
        slot["endpoints"][endpoint.name] = {
            "publicPort": endpoint.port,
            "protocol": endpoint.protocol,
            "backends": backends,
            **_policy_json(endpoint.policy),
        }
    return slot


def _policy_json(policy: InputEndpoint | None) -> dict[str, Any]:
    """The load-balancing policy of an endpoint in the LB's schema (``cumulo.lb.routes``)."""
    if policy is None:
        return {}
    out: dict[str, Any] = {
        "distribution": policy.distribution,
        "idleTimeoutSeconds": policy.idle_timeout,
        "ignoreRoleInstanceStatus": policy.ignore_status,
        "acl": [
            {
                "order": r.order,
                "action": r.action,
                "remoteSubnet": r.remote_subnet,
                "description": r.description,
            }
            for r in policy.acl
        ],
    }
    if policy.probe is not None:
        probe: dict[str, Any] = {
            "protocol": policy.probe.protocol,
            "intervalSeconds": policy.probe.interval,
            "timeoutSeconds": policy.probe.timeout,
        }
        if policy.probe.path is not None:
            probe["path"] = policy.probe.path
        if policy.probe.port is not None:
            probe["port"] = policy.probe.port
        out["probe"] = probe
    return out


def route_table_json(
    routes: ServiceRoutes,
    *,
    version: int,
    addresses: Mapping[str, str] | None = None,
    drain_timeout: float = 30.0,
) -> dict[str, Any]:
    """The LB's route table (schema in ``cumulo.lb.routes``) for one service's two VIPs."""
    addresses = addresses or {}
    return {
        "version": version,
        "drainTimeoutSeconds": drain_timeout,
        "slots": {
            "production": _slot_json(routes.production, addresses.get("production")),
            "staging": _slot_json(routes.staging, addresses.get("staging")),
        },
    }


# -- HTTP adapters -------------------------------------------------------------------------------


@dataclass
class _Http:
    url: str
    token: str
    timeout: float = 10.0
    transport: httpx.AsyncBaseTransport | None = None

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=self.url.rstrip("/"),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=self.timeout,
            transport=self.transport,
        )

    async def text(self, path: str, **kwargs: Any) -> str:
        try:
            response = await self.client.get(path, **kwargs)
        except httpx.TransportError as exc:
            raise TemporaryError(f"{self.url} did not answer ({type(exc).__name__}).") from None
        if response.status_code == 404:
            raise NotFoundError(f"{self.url}{path} does not exist.")
        if response.status_code >= 400:
            raise TemporaryError(f"GET {self.url}{path} answered {response.status_code}.")
        return response.text

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TemporaryError(f"{self.url} did not answer ({type(exc).__name__}).") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:300]
            exc_cls: type[CumuloError] = (
                TemporaryError if response.status_code >= 500 else InternalError
            )
            raise exc_cls(f"{method} {self.url}{path} answered {response.status_code}: {detail}")
        return response.json() if response.content else None

    async def close(self) -> None:
        await self.client.aclose()

    generation: int = 0
    """Raised by ``set_url``: a new process whose event numbers start again."""

    async def set_url(self, url: str) -> None:
        """Talk to ``url`` from now on (a restarted process listens on a new port)."""
        old = self.client
        self.url = url
        self.generation += 1
        self.__post_init__()
        await old.aclose()


class HostAgentHttp(_Http):
    """``HostAgentPort`` over the host agent's HTTP API."""

    def __init__(self, name: str, fault_domain: int, url: str, token: str, **kw: Any) -> None:
        super().__init__(url, token, **kw)
        self.name = name
        self.fault_domain = fault_domain

    async def observe(self) -> list[dict[str, Any]]:
        data = await self.call("GET", "/v1/instances")
        return list(data.get("instances", []))

    async def apply(
        self, specs: Sequence[Mapping[str, Any]], *, deployment_id: str | None = None
    ) -> dict[str, list[str]]:
        body: dict[str, Any] = {"instances": list(specs)}
        if deployment_id is not None:
            body["deployment_id"] = deployment_id
        result: dict[str, list[str]] = await self.call("PUT", "/v1/instances", json=body)
        return result

    async def instance_action(self, deployment_id: str, instance_id: str, action: str) -> None:
        await self.call("POST", f"/v1/instances/{deployment_id}/{instance_id}/{action}")

    async def push_topology(self, deployment_id: str, roles: Mapping[str, Any]) -> None:
        await self.call("PUT", f"/v1/deployments/{deployment_id}/topology", json={"roles": roles})

    async def events(self, since: int) -> list[dict[str, Any]]:
        """The host's events after ``since`` (its ``GET /v1/events`` NDJSON)."""
        text = await self.text("/v1/events", params={"since": since})
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    async def logs(self, deployment_id: str, instance_id: str, name: str, tail: int) -> str:
        return await self.text(
            f"/v1/instances/{deployment_id}/{instance_id}/logs/{name}", params={"tail": tail}
        )

    async def prepare(self, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Ask the host to build the dependency environments of these specs' roles; one item
        per role folder with ``state`` ready, building or failed (``POST /v1/prepare``)."""
        data = await self.call("POST", "/v1/prepare", json={"instances": list(specs)})
        return list(data.get("roles", []))

    async def exec(
        self, deployment_id: str, instance_id: str, argv: Sequence[str], timeout: float
    ) -> dict[str, Any]:
        """Run a command in an instance's context on this host; the host's own refusals (a bad
        command 400, an unknown instance 404, an instance not running 409) keep their kind."""
        path = f"/v1/instances/{deployment_id}/{instance_id}/exec"
        try:
            response = await self.client.post(
                path, json={"argv": list(argv), "timeout": timeout}, timeout=timeout + 15
            )
        except httpx.TransportError as exc:
            raise TemporaryError(f"{self.url} did not answer ({type(exc).__name__}).") from None
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", response.text))
            except ValueError:
                detail = response.text[:300]
            kinds: dict[int, type[CumuloError]] = {
                400: InputError,
                404: NotFoundError,
                409: ConflictError,
            }
            raise kinds.get(response.status_code, TemporaryError)(detail)
        result: dict[str, Any] = response.json()
        return result


class LoadBalancerHttp(_Http):
    """``LoadBalancerPort`` over the load balancer's HTTP API."""

    async def get_routes(self) -> tuple[dict[str, Any], str]:
        data = await self.call("GET", "/v1/routes")
        return dict(data.get("table") or {}), str(data.get("bootId", ""))

    async def put_routes(self, table: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("PUT", "/v1/routes", json=dict(table))
        return result
