"""The management API: a Starlette app over ``controller.management.Management``.

Resources follow Azure's Service Management API (reference §7): services, deployments by slot,
role instances, operations; plus packages (content-addressed uploads) and events. Every
mutating request on a deployment answers **202 Accepted** with the operation
(``Location: /v1/operations/<id>``); poll it until ``status`` is ``Succeeded`` or ``Failed``.
Deployments carry an ``ETag``; send it back in ``If-Match`` to refuse a write when the
deployment changed meanwhile (412 ``PreconditionFailed``). Errors are problem+json
(``api.problems``). The route table below also builds the OpenAPI document
(``GET /openapi.json``), so the two cannot drift.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cumulo import __version__
from cumulo.api import dashboard
from cumulo.api.auth import BearerAuth
from cumulo.api.metrics import metrics_text
from cumulo.api.problems import handle_cumulo_error, handle_unexpected
from cumulo.controller import autoscaler
from cumulo.controller.management import Management
from cumulo.controller.views import deployment_view
from cumulo.errors import CumuloError, InputError, TemporaryError
from cumulo.storage.store.records import OperationRecord

MAX_PACKAGE_BYTES = 1024 * 1024 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation_id: str
    summary: str
    handler_name: str
    body: dict[str, Any] | None = None
    """JSON schema of the request body (None: no body)."""
    responses: dict[str, str] = field(default_factory=lambda: {"200": "OK"})
    body_type: str = "application/json"
    headers: tuple[str, ...] = ()


def _props(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


STR: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}
INT: dict[str, Any] = {"type": "integer"}
MODE: dict[str, Any] = {"type": "string", "enum": ["auto", "manual", "simultaneous"]}
ACCEPTED = {"202": "Accepted: the operation (poll /v1/operations/{id})"}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/v1/health", "health", "Liveness of the API (no token needed)", "health"),
    Endpoint("GET", "/v1/services", "listServices", "List services", "list_services"),
    Endpoint(
        "POST",
        "/v1/services",
        "createService",
        "Create a cloud service",
        "create_service",
        _props(["name"], name=STR, label=STR, description=STR),
        {"201": "Created"},
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}",
        "getService",
        "A service and its deployments",
        "get_service",
    ),
    Endpoint(
        "DELETE",
        "/v1/services/{service}",
        "deleteService",
        "Delete a service (refused with 409 while it has deployments)",
        "delete_service",
        responses={"204": "Deleted"},
    ),
    Endpoint(
        "POST",
        "/v1/packages",
        "uploadPackage",
        "Upload a package (.cspkg); stored by content digest",
        "upload_package",
        {"type": "string", "format": "binary"},
        {"201": "Created: {digest, size}"},
        body_type="application/octet-stream",
    ),
    Endpoint(
        "GET", "/v1/packages/{digest}", "getPackage", "Package size and digest", "get_package"
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}",
        "createDeployment",
        "Create a deployment in a slot from an uploaded package and a .cscfg",
        "create_deployment",
        _props(
            ["package", "configuration"],
            package=STR,
            configuration=STR,
            name=STR,
            label=STR,
            start=BOOL,
        ),
        ACCEPTED,
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/deploymentslots/{slot}",
        "getDeployment",
        "A deployment: status, instances (status, UD, FD, endpoints), VIPs, upgrade status",
        "get_deployment",
        headers=("ETag",),
    ),
    Endpoint(
        "DELETE",
        "/v1/services/{service}/deploymentslots/{slot}",
        "deleteDeployment",
        "Delete a deployment (If-Match honoured)",
        "delete_deployment",
        responses=ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/status",
        "updateDeploymentStatus",
        "Set a deployment Running or Suspended",
        "update_status",
        _props(["status"], status={"type": "string", "enum": ["Running", "Suspended"]}),
        ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/config",
        "changeConfiguration",
        "Change the .cscfg (settings in place, counts scale, walked by update domain)",
        "change_configuration",
        _props(["configuration"], configuration=STR, mode=MODE),
        ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/scale",
        "scaleRole",
        "Set one role's instance count (a configuration change of Instances)",
        "scale",
        _props(["role", "count"], role=STR, count=INT),
        ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/upgrade",
        "upgradeDeployment",
        "Upgrade to a new package (and .cscfg), for all roles or one",
        "upgrade",
        _props(["package"], package=STR, configuration=STR, mode=MODE, role=STR, force=BOOL),
        ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/walk",
        "walkUpgradeDomain",
        "Manual mode: update the next update domain",
        "walk",
        _props(["domain"], domain=INT),
        ACCEPTED,
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/rollback",
        "rollback",
        "Roll back the update in progress",
        "rollback",
        _props([], mode={"type": "string", "enum": ["auto", "manual"]}, force=BOOL),
        ACCEPTED,
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/roleinstances/{instance}/exec",
        "instanceExec",
        "Run a command in a role instance's context (its user, environment and approot) and "
        "return its exit code and output",
        "instance_exec",
        _props(
            ["argv"],
            argv={"type": "array", "items": STR},
            timeout={"type": "number", "minimum": 0, "maximum": 3600},
        ),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/roleinstances/{instance}/{action}",
        "instanceAction",
        "Reboot, reimage or rebuild one role instance",
        "instance_action",
        responses=ACCEPTED,
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/deploymentslots/{slot}/roleinstances/{instance}/logs/{name}",
        "instanceLog",
        "The last lines (query: tail, default 200) of an instance's log: entry, site or "
        "task<N> (text/plain)",
        "instance_log",
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/deploymentslots/{slot}/roleinstances:delete",
        "deleteRoleInstances",
        "Delete role instances (the role's instance count drops)",
        "delete_instances",
        _props(["instances"], instances={"type": "array", "items": STR}),
        ACCEPTED,
        headers=("If-Match",),
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/swap",
        "swapDeployment",
        "VIP swap of production and staging",
        "swap",
        responses=ACCEPTED,
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/certificates",
        "listCertificates",
        "The service's certificate store (thumbprints, subjects, expiry; never keys)",
        "list_certificates",
    ),
    Endpoint(
        "POST",
        "/v1/services/{service}/certificates",
        "addCertificate",
        "Add a PEM or PFX certificate (base64 in 'data'), with its private key if present",
        "add_certificate",
        _props(["data"], data=STR, password=STR, filename=STR),
        {"201": "Created: the certificate (thumbprint, subject, not_after)"},
    ),
    Endpoint(
        "DELETE",
        "/v1/services/{service}/certificates/{thumbprint}",
        "deleteCertificate",
        "Remove a certificate from the service's store",
        "delete_certificate",
        responses={"204": "Deleted"},
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/autoscale",
        "listAutoscale",
        "The service's autoscale settings (per slot and role), each with its last evaluation",
        "list_autoscale",
    ),
    Endpoint(
        "PUT",
        "/v1/services/{service}/deploymentslots/{slot}/roles/{role}/autoscale",
        "setAutoscale",
        "Set a role's autoscale setting: capacity and CPU/queue rules (docs/autoscale.md)",
        "set_autoscale",
        _props(
            ["capacity"],
            capacity=_props(["minimum", "maximum"], minimum=INT, maximum=INT, default=INT),
            rules={"type": "array", "maxItems": 10, "items": {"type": "object"}},
        ),
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/deploymentslots/{slot}/roles/{role}/autoscale",
        "getAutoscale",
        "A role's autoscale setting and its last evaluation (values, decision, last action)",
        "get_autoscale",
    ),
    Endpoint(
        "DELETE",
        "/v1/services/{service}/deploymentslots/{slot}/roles/{role}/autoscale",
        "deleteAutoscale",
        "Autoscale off for a role (its instance count stays as it is)",
        "delete_autoscale",
        responses={"204": "Deleted"},
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/operations",
        "listOperations",
        "Operations of a service",
        "list_operations",
    ),
    Endpoint(
        "GET",
        "/v1/operations/{operation}",
        "getOperation",
        "One operation: status InProgress, Succeeded or Failed (with its error)",
        "get_operation",
    ),
    Endpoint(
        "GET",
        "/v1/services/{service}/events",
        "listEvents",
        "The service's event history (query: after, slot, limit)",
        "list_events",
    ),
    Endpoint(
        "GET",
        "/v1/metrics",
        "metrics",
        "Every instance's status, rotation, CPU, memory and restarts in Prometheus' text format",
        "metrics",
    ),
)


def operation_json(op: OperationRecord) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "service": op.service,
        "slot": op.slot,
        "deployment_id": op.deployment_id,
        "status": op.status.value,
        "http_status": op.http_status,
        "error": None
        if op.error_code is None
        else {"code": op.error_code, "message": op.error_message},
        "created_at": op.created_at,
        "updated_at": op.updated_at,
    }


def _accepted(op: OperationRecord) -> JSONResponse:
    return JSONResponse(
        operation_json(op),
        status_code=202,
        headers={"Location": f"/v1/operations/{op.id}", "Operation-Id": op.id},
    )


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise InputError(f"The request body is {len(body)} bytes; at most {MAX_JSON_BYTES}.")
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InputError(f"The request body is not JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise InputError("The request body must be a JSON object.")
    return data


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise InputError(f"The request body has no {name!r} field.")
        return None
    value = data[name]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise InputError(f"Field {name!r} is {value!r}; it must be a {kind.__name__}.")
    return value


LogReader = Callable[[str, str, str, str, int], Awaitable[str]]
"""(service, slot, instance, log name, tail) -> text: reads a log from the instance's host."""

InstanceExec = Callable[[str, str, str, list[str], float], Awaitable[dict[str, Any]]]
"""(service, slot, instance, argv, timeout) -> {exit_code, output, timed_out, host}: runs a
command in an instance's context on its host."""


class AutoscaleHooks(Protocol):
    """The running autoscaler, as the API sees it (``controller.autoscaler.Autoscaler``)."""

    def status(self, service: str, slot: str, role: str) -> dict[str, Any] | None: ...
    def wake(self) -> None: ...


class Api:
    """The request handlers; one instance per app."""

    def __init__(
        self,
        management: Management,
        logs: LogReader | None = None,
        exec_: InstanceExec | None = None,
        autoscale: AutoscaleHooks | None = None,
    ) -> None:
        self.m = management
        self.logs = logs
        self.exec = exec_
        self.autoscale = autoscale

    def _autoscale_status(self, service: str, slot: str, role: str) -> dict[str, Any] | None:
        return self.autoscale.status(service, slot, role) if self.autoscale else None

    async def list_autoscale(self, request: Request) -> Response:
        service = request.path_params["service"]
        views = await run_in_threadpool(
            autoscaler.list_settings, self.m, service, self._autoscale_status
        )
        return JSONResponse({"settings": views})

    async def set_autoscale(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        view = await run_in_threadpool(
            autoscaler.put_setting,
            self.m,
            p["service"],
            p["slot"],
            p["role"],
            data,
            self._autoscale_status,
        )
        if self.autoscale is not None:
            self.autoscale.wake()
        return JSONResponse(view)

    async def get_autoscale(self, request: Request) -> Response:
        p = request.path_params
        view = await run_in_threadpool(
            autoscaler.get_setting,
            self.m,
            p["service"],
            p["slot"],
            p["role"],
            self._autoscale_status,
        )
        return JSONResponse(view)

    async def delete_autoscale(self, request: Request) -> Response:
        p = request.path_params
        await run_in_threadpool(
            autoscaler.delete_setting, self.m, p["service"], p["slot"], p["role"]
        )
        return Response(status_code=204)

    async def instance_exec(self, request: Request) -> Response:
        p = request.path_params
        if self.exec is None:
            raise TemporaryError("Commands run on the hosts; this API runs without them.")
        data = await _json(request)
        argv = _field(data, "argv", list)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise InputError("Field 'argv' must be a non-empty list of strings.")
        timeout = data.get("timeout", 60)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise InputError(f"Field 'timeout' is {timeout!r}; it must be a number of seconds.")
        if not 0 < timeout <= 3600:
            raise InputError(f"Field 'timeout' is {timeout}; it must be from 0 to 3600 seconds.")
        result = await self.exec(p["service"], p["slot"].lower(), p["instance"], argv, timeout)
        return JSONResponse(result)

    async def instance_log(self, request: Request) -> Response:
        p = request.path_params
        if self.logs is None:
            raise TemporaryError("Logs are read from the hosts; this API runs without them.")
        try:
            tail = max(1, min(int(request.query_params.get("tail", "200")), 100_000))
        except ValueError:
            raise InputError("Query parameter 'tail' is a number of lines.") from None
        if not re.fullmatch(r"entry|site|task[0-9]+", p["name"]):
            raise InputError(f"Log {p['name']!r} is not one of entry, site, task<N>.")
        text = await self.logs(p["service"], p["slot"].lower(), p["instance"], p["name"], tail)
        return PlainTextResponse(text)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def list_services(self, request: Request) -> Response:
        services = await run_in_threadpool(self.m.store.list_services)
        return JSONResponse({"services": [asdict(s) for s in services]})

    async def create_service(self, request: Request) -> Response:
        data = await _json(request)
        record = await run_in_threadpool(
            lambda: self.m.create_service(
                _field(data, "name", str),
                label=_field(data, "label", str, required=False) or "",
                description=_field(data, "description", str, required=False) or "",
            )
        )
        return JSONResponse(
            asdict(record), status_code=201, headers={"Location": f"/v1/services/{record.name}"}
        )

    def _views(self, service: str) -> list[dict[str, Any]]:
        observed = self.m.observe()
        return [
            deployment_view(r, self.m.desired_of(r), observed, self.m.running_operation(r.id))
            for r in self.m.store.list_deployments(service)
        ]

    async def metrics(self, request: Request) -> Response:
        def read() -> str:
            services = self.m.store.list_services()
            return metrics_text(v for s in services for v in self._views(s.name))

        return PlainTextResponse(
            await run_in_threadpool(read), media_type="text/plain; version=0.0.4"
        )

    async def get_service(self, request: Request) -> Response:
        name = request.path_params["service"]

        def read() -> dict[str, Any]:
            record = self.m.store.get_service(name)
            return {**asdict(record), "deployments": self._views(name)}

        return JSONResponse(await run_in_threadpool(read))

    async def delete_service(self, request: Request) -> Response:
        await run_in_threadpool(self.m.delete_service, request.path_params["service"])
        return Response(status_code=204)

    async def upload_package(self, request: Request) -> Response:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_PACKAGE_BYTES:
            raise InputError(f"The package is {size} bytes; at most {MAX_PACKAGE_BYTES}.")
        data = await request.body()
        info = await run_in_threadpool(self.m.upload_package, data)
        return JSONResponse(
            asdict(info), status_code=201, headers={"Location": f"/v1/packages/{info.digest}"}
        )

    async def get_package(self, request: Request) -> Response:
        info = await run_in_threadpool(self.m.store.package_info, request.path_params["digest"])
        return JSONResponse(asdict(info))

    async def create_deployment(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        start = _field(data, "start", bool, required=False)
        op = await run_in_threadpool(
            lambda: self.m.create_deployment(
                p["service"],
                p["slot"],
                package_digest=_field(data, "package", str),
                configuration=_field(data, "configuration", str),
                name=_field(data, "name", str, required=False) or "",
                label=_field(data, "label", str, required=False) or "",
                start=True if start is None else start,
            )
        )
        return _accepted(op)

    async def get_deployment(self, request: Request) -> Response:
        p = request.path_params

        def read() -> dict[str, Any]:
            record = self.m.store.get_deployment(p["service"], p["slot"].lower())
            return deployment_view(
                record,
                self.m.desired_of(record),
                self.m.observe(),
                self.m.running_operation(record.id),
            )

        view = await run_in_threadpool(read)
        return JSONResponse(view, headers={"ETag": view["etag"]})

    async def delete_deployment(self, request: Request) -> Response:
        p = request.path_params
        op = await run_in_threadpool(
            lambda: self.m.delete_deployment(
                p["service"], p["slot"], if_match=request.headers.get("if-match")
            )
        )
        return _accepted(op)

    async def update_status(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        op = await run_in_threadpool(
            lambda: self.m.update_status(
                p["service"],
                p["slot"],
                _field(data, "status", str),
                if_match=request.headers.get("if-match"),
            )
        )
        return _accepted(op)

    async def change_configuration(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        op = await run_in_threadpool(
            lambda: self.m.change_configuration(
                p["service"],
                p["slot"],
                _field(data, "configuration", str),
                mode=_field(data, "mode", str, required=False) or "auto",
                if_match=request.headers.get("if-match"),
            )
        )
        return _accepted(op)

    async def scale(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        op = await run_in_threadpool(
            lambda: self.m.scale(
                p["service"],
                p["slot"],
                _field(data, "role", str),
                _field(data, "count", int),
                if_match=request.headers.get("if-match"),
            )
        )
        return _accepted(op)

    async def upgrade(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        if _field(data, "plan", bool, required=False):
            preview = await run_in_threadpool(
                lambda: self.m.upgrade_plan(
                    p["service"],
                    p["slot"],
                    package_digest=_field(data, "package", str),
                    configuration=_field(data, "configuration", str, required=False),
                    role=_field(data, "role", str, required=False),
                )
            )
            return JSONResponse(preview)
        op = await run_in_threadpool(
            lambda: self.m.upgrade(
                p["service"],
                p["slot"],
                package_digest=_field(data, "package", str),
                configuration=_field(data, "configuration", str, required=False),
                mode=_field(data, "mode", str, required=False) or "auto",
                role=_field(data, "role", str, required=False),
                force=bool(_field(data, "force", bool, required=False)),
                if_match=request.headers.get("if-match"),
            )
        )
        return _accepted(op)

    async def walk(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        domain = _field(data, "domain", int)
        op = await run_in_threadpool(lambda: self.m.walk(p["service"], p["slot"], domain))
        return _accepted(op)

    async def rollback(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        op = await run_in_threadpool(
            lambda: self.m.rollback(
                p["service"],
                p["slot"],
                mode=_field(data, "mode", str, required=False) or "auto",
                force=bool(_field(data, "force", bool, required=False)),
            )
        )
        return _accepted(op)

    async def instance_action(self, request: Request) -> Response:
        p = request.path_params
        op = await run_in_threadpool(
            lambda: self.m.instance_action(p["service"], p["slot"], p["instance"], p["action"])
        )
        return _accepted(op)

    async def delete_instances(self, request: Request) -> Response:
        p = request.path_params
        data = await _json(request)
        names = _field(data, "instances", list)
        if not names or not all(isinstance(n, str) for n in names):
            raise InputError("Field 'instances' must be a non-empty list of instance names.")
        op = await run_in_threadpool(
            lambda: self.m.delete_instances(
                p["service"], p["slot"], names, if_match=request.headers.get("if-match")
            )
        )
        return _accepted(op)

    async def swap(self, request: Request) -> Response:
        op = await run_in_threadpool(self.m.swap, request.path_params["service"])
        return _accepted(op)

    async def list_certificates(self, request: Request) -> Response:
        service = request.path_params["service"]
        certs = await run_in_threadpool(self.m.list_certificates, service)
        return JSONResponse({"certificates": certs})

    async def add_certificate(self, request: Request) -> Response:
        service = request.path_params["service"]
        data = await _json(request)
        try:
            raw = base64.b64decode(_field(data, "data", str), validate=True)
        except ValueError:
            raise InputError("Field 'data' must be the certificate file in base64.") from None
        cert = await run_in_threadpool(
            lambda: self.m.add_certificate(
                service,
                raw,
                password=_field(data, "password", str, required=False),
                filename=_field(data, "filename", str, required=False) or "the certificate",
            )
        )
        return JSONResponse(cert, status_code=201)

    async def delete_certificate(self, request: Request) -> Response:
        p = request.path_params
        await run_in_threadpool(self.m.delete_certificate, p["service"], p["thumbprint"])
        return Response(status_code=204)

    async def list_operations(self, request: Request) -> Response:
        service = request.path_params["service"]

        def read() -> list[OperationRecord]:
            self.m.store.get_service(service)
            return self.m.store.list_operations(service=service)

        ops = await run_in_threadpool(read)
        return JSONResponse({"operations": [operation_json(o) for o in ops]})

    async def get_operation(self, request: Request) -> Response:
        op = await run_in_threadpool(self.m.store.get_operation, request.path_params["operation"])
        return JSONResponse(operation_json(op))

    async def list_events(self, request: Request) -> Response:
        service = request.path_params["service"]
        q = request.query_params
        try:
            after = int(q.get("after", "0"))
            limit = min(int(q.get("limit", "1000")), 10_000)
        except ValueError:
            raise InputError("Query parameters 'after' and 'limit' are integers.") from None

        def read() -> list[dict[str, Any]]:
            self.m.store.get_service(service)
            events = self.m.store.list_events(service, after=after, slot=q.get("slot"), limit=limit)
            return [asdict(e) for e in events]

        return JSONResponse({"events": await run_in_threadpool(read)})


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document, built from ``ENDPOINTS``."""
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        params = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": STR}
            for part in e.path.replace(":", "/").split("/")
            if part.startswith("{")
        ]
        params += [
            {"name": h, "in": "header", "required": False, "schema": STR}
            for h in e.headers
            if h == "If-Match"
        ]
        op: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            "parameters": params,
            "responses": {
                **{code: {"description": text} for code, text in e.responses.items()},
                "default": {
                    "description": "An error (problem+json)",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            },
        }
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {e.body_type: {"schema": e.body}}}
        if e.path != "/v1/health":
            op["security"] = [{"bearer": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cumulo management API",
            "version": __version__,
            "description": "Services, deployments by slot, role instances and operations, "
            "shaped after Azure's Service Management API. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": _props(
                    ["type", "title", "status", "detail", "code"],
                    type=STR,
                    title=STR,
                    status=INT,
                    detail=STR,
                    code=STR,
                    problems={"type": "array"},
                    operation=STR,
                )
            },
        },
    }


def create_app(
    management: Management,
    *,
    token: str,
    logs: LogReader | None = None,
    exec_: InstanceExec | None = None,
    autoscale: AutoscaleHooks | None = None,
) -> Starlette:
    """The ASGI app: routes, bearer auth, problem+json errors."""
    api = Api(management, logs, exec_, autoscale)
    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes = [Route("/openapi.json", openapi, methods=["GET"]), *dashboard.routes()]
    for e in ENDPOINTS:
        routes.append(Route(e.path, getattr(api, e.handler_name), methods=[e.method]))
    return Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, token=token)],
        exception_handlers={CumuloError: handle_cumulo_error, Exception: handle_unexpected},
    )
