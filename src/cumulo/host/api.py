"""The host agent's HTTP API, called by the controller (and by ``cumulo host`` commands).

Every request carries ``Authorization: Bearer <token>`` (the token given to ``cumulo host run``
with ``--token-file``); otherwise 401. Errors are ``application/problem+json``:
``{"type", "title", "status", "detail", "code"}`` with ``code`` from ``cumulo.errors``.
Instance keys are ``<deployment_id>/<instance_id>``; bodies and answers are JSON.

``GET  /v1/health``
    ``{"host": "host-0", "version": "0.1.0", "instances": 3, "epoch": 1764098912.5}``;
    ``epoch`` is when this agent process started (event ``seq`` numbers restart with it).
``PUT  /v1/instances``
    Body ``{"instances": [InstanceSpec...], "deployment_id": "d1" (optional scope)}``.
    Desired state, idempotent: starts the missing instances, stops the extra ones (all of this
    host's, or only deployment ``deployment_id``'s when given), applies settings-only changes in
    place (Changing/Changed; a cancel recycles), recycles instances whose spec changed otherwise,
    touches nothing else. Answers at once: ``{"started": [keys], "stopped": [...], "changed":
    [...], "recycled": [...], "unchanged": [...]}``; progress shows in the observed states.
    An ``InstanceSpec`` is ``cumulo.state.spec.InstanceSpec.to_json()`` (every field documented
    there); a bad one is a 400 naming the field.
``POST /v1/prepare``
    Body ``{"instances": [InstanceSpec...]}``: builds the role dependency environments these
    specs need (``cumulo.host.roleenv``), touching no instance. Answers at once ``{"roles":
    [{"role", "source", "state": "ready" | "building" | "failed", "detail"}]}``; call again to
    poll. The controller calls it before it stops any instance for an upgrade.
``GET  /v1/instances[?deployment_id=d1]``
    ``{"host": "host-0", "instances": [observed...]}``; one observed instance is ``{"key",
    "deployment_id", "service", "slot", "role", "instance_id", "update_domain", "fault_domain",
    "state" (ReadyRole, BusyRole, ...), "since" (epoch s), "detail" (a sentence), "ready",
    "address" (the DIP), "endpoints": [{"name", "kind", "protocol", "port" (public), "address",
    "local_port", "routable"}], "pid", "user", "limits", "restarts", "consecutive_failures",
    "last_exit_code", "quota_exceeded", "local_storage", "usage" ({memory_mb, cpu_seconds, cores}),
    "log_tail" (last lines of the entry/site log), "host",
    "removing"}``. Route only to endpoints with ``routable`` true.
``GET  /v1/instances/{deployment_id}/{instance_id}``
    One observed instance (404 if it does not run here).
``POST /v1/instances/{deployment_id}/{instance_id}/reboot|reimage|rebuild``
    202 ``{"key", "operation"}``. Reboot: processes restart, approot and local storage kept.
    Reimage: fresh approot, local storage kept (except ``cleanOnRoleRecycle``). Rebuild: all wiped.
``POST /v1/instances/{deployment_id}/{instance_id}/exec``
    Body ``{"argv": ["program", "arg"...], "timeout": 60}``: runs the command in the instance's
    context (its user, environment, approot and limits; ``python`` is the role's interpreter) and
    answers when it ends: ``{"exit_code" (negative: signal), "output" (stdout+stderr, the last
    1 MiB), "timed_out"}``. 409 while the instance is not prepared.
``GET  /v1/instances/{deployment_id}/{instance_id}/logs/{name}?tail=200&follow=0``
    ``text/plain``: the last lines of ``entry``, ``site`` or ``task<N>``; ``follow=1`` streams.
``GET  /v1/events?since=0&key=<key>&follow=0``
    ``application/x-ndjson``: ``{"seq", "epoch", "time", "event", "key", ...fields}`` per line,
    after ``since``; ``follow=1`` keeps the stream open (reconnect with the last seq; a new
    ``epoch`` means the agent restarted and numbering began again).
``PUT  /v1/deployments/{deployment_id}/topology``
    Body ``{"roles": {"Role": [{"id", "role", "update_domain", "fault_domain", "endpoints":
    {"name": {"protocol", "address", "port"}}}]}}`` — every instance of the deployment with its
    internal endpoints; pushed to the instances' SDK (``changed``/topology). 204.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from cumulo import __version__
from cumulo.errors import AuthError, CumuloError, InputError
from cumulo.host import logs
from cumulo.host.agent import HostAgent
from cumulo.state.spec import InstanceSpec

Handler = Callable[[Request], Awaitable[Response]]


def problem(exc: CumuloError) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"https://cumulo.dev/problems/{exc.code}",
            "title": type(exc).__name__,
            "status": exc.http_status,
            "detail": exc.message,
            "code": exc.code,
        },
        status_code=exc.http_status,
        media_type="application/problem+json",
    )


def create_app(agent: HostAgent, token: str, *, manage_agent: bool = False) -> Starlette:
    """The API of ``agent``; with ``manage_agent`` the app starts and closes the agent itself."""

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            try:
                if not given or not hmac.compare_digest(given.encode(), token.encode()):
                    raise AuthError("A valid 'Authorization: Bearer <token>' header is required.")
                return await handler(request)
            except CumuloError as exc:
                return problem(exc)

        return wrapped

    async def body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError as exc:
            raise InputError(f"The request body is not valid JSON: {exc}.") from None

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "host": agent.host_id,
                "version": __version__,
                "instances": len(agent.guests),
                "epoch": agent.epoch,
            }
        )

    def specs_of(data: Any) -> list[InstanceSpec]:
        """The ``InstanceSpec`` list of a ``{"instances": [...]}`` body; a bad one is a 400."""
        if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
            raise InputError('The body must be {"instances": [...]}.')
        specs = []
        for i, item in enumerate(data["instances"]):
            try:
                specs.append(InstanceSpec.from_json(item))
            except ValueError as exc:
                raise InputError(f"instances[{i}]: {exc}") from None
        return specs

    async def put_instances(request: Request) -> Response:
        data = await body(request)
        specs = specs_of(data)
        scope = data.get("deployment_id")
        if scope is not None and not isinstance(scope, str):
            raise InputError("deployment_id must be a string.")
        return JSONResponse(await agent.apply(specs, scope=scope))

    async def prepare(request: Request) -> Response:
        return JSONResponse({"roles": await agent.prepare(specs_of(await body(request)))})

    async def list_instances(request: Request) -> Response:
        dep = request.query_params.get("deployment_id")
        return JSONResponse({"host": agent.host_id, "instances": agent.observed(dep)})

    def key_of(request: Request) -> str:
        return f"{request.path_params['deployment_id']}/{request.path_params['instance_id']}"

    async def get_instance(request: Request) -> Response:
        key = key_of(request)
        item = agent.guest(key).observed()
        item["host"] = agent.host_id
        return JSONResponse(item)

    async def operate(request: Request) -> Response:
        key = key_of(request)
        op = request.path_params["op"]
        agent.operate(key, op)
        return JSONResponse({"key": key, "operation": op}, status_code=202)

    async def exec_command(request: Request) -> Response:
        data = await body(request)
        argv = data.get("argv") if isinstance(data, dict) else None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise InputError('The body must be {"argv": ["program", "arg", ...], "timeout": 60}.')
        timeout = data.get("timeout", 60)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise InputError("timeout is a number of seconds from 0 to 3600.")
        return JSONResponse(await agent.exec(key_of(request), argv, float(timeout)))

    async def get_log(request: Request) -> Response:
        path = agent.log_path(key_of(request), request.path_params["name"])
        try:
            lines = int(request.query_params.get("tail", "200"))
        except ValueError:
            raise InputError("tail must be a number of lines.") from None
        if request.query_params.get("follow") != "1":
            text = "\n".join(logs.tail(path, lines))
            return PlainTextResponse(text + ("\n" if text else ""))

        async def stream() -> AsyncIterator[bytes]:
            for line in logs.tail(path, lines):
                yield (line + "\n").encode()
            position = path.stat().st_size if path.exists() else 0
            while True:
                await asyncio.sleep(0.25)
                with contextlib.suppress(OSError):
                    size = path.stat().st_size
                    if size < position:
                        position = 0
                    if size > position:
                        with open(path, "rb") as f:
                            f.seek(position)
                            chunk = f.read(size - position)
                        position = size
                        yield chunk

        return StreamingResponse(stream(), media_type="text/plain")

    async def events(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            raise InputError("since must be an event sequence number.") from None
        key = request.query_params.get("key")
        if request.query_params.get("follow") != "1":
            text = "".join(json.dumps(e) + "\n" for e in agent.events_since(since, key))
            return Response(text, media_type="application/x-ndjson")

        async def stream() -> AsyncIterator[bytes]:
            async for e in agent.follow_events(since, key):
                yield (json.dumps(e) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def topology(request: Request) -> Response:
        data = await body(request)
        if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
            raise InputError('The body must be {"roles": {"Role": [instances...]}}.')
        agent.set_topology(request.path_params["deployment_id"], data["roles"])
        return Response(status_code=204)

    routes = [
        Route("/v1/health", guarded(health), methods=["GET"]),
        Route("/v1/instances", guarded(put_instances), methods=["PUT"]),
        Route("/v1/instances", guarded(list_instances), methods=["GET"]),
        Route("/v1/prepare", guarded(prepare), methods=["POST"]),
        Route(
            "/v1/instances/{deployment_id}/{instance_id}", guarded(get_instance), methods=["GET"]
        ),
        Route(
            "/v1/instances/{deployment_id}/{instance_id}/exec",
            guarded(exec_command),
            methods=["POST"],
        ),
        Route(
            "/v1/instances/{deployment_id}/{instance_id}/{op:str}",
            guarded(operate),
            methods=["POST"],
        ),
        Route(
            "/v1/instances/{deployment_id}/{instance_id}/logs/{name}",
            guarded(get_log),
            methods=["GET"],
        ),
        Route("/v1/events", guarded(events), methods=["GET"]),
        Route("/v1/deployments/{deployment_id}/topology", guarded(topology), methods=["PUT"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_agent:
            await agent.start()
        try:
            yield
        finally:
            if manage_agent:
                await agent.close()

    return Starlette(routes=routes, lifespan=lifespan)


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise InputError(f"Cannot read the token file {path}: {exc.strerror}.") from None
    if not token:
        raise InputError(f"The token file {path} is empty.")
    return token
