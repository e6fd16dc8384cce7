"""The load balancer's small authenticated HTTP API, used by the fabric controller.

Why so small and hand-written: it is the control plane of a data-plane process, called a few
times per deployment change, and it must run in the same event loop as the proxy (so a swap is
applied between two accepts, never during one). HTTP/1.1 with keep-alive, JSON in and out,
errors as problem+json with the stable codes of ``cumulo.errors``.

Every route except ``GET /healthz`` needs ``Authorization: Bearer <token>``.

==========================================  =====================================================
``GET  /healthz``                           ``{"status": "ok", "bootId", "version"}`` (no token)
``GET  /v1/routes``                         ``{"table": <route table JSON>, "bootId", ...}``
``PUT  /v1/routes``                         body: a route table (schema: ``cumulo.lb.routes``);
                                            answers the listeners with their real addresses
``POST /v1/swap``                           body ``{}`` or ``{"version": n}``: exchange the
                                            production and staging tables atomically; answers
                                            ``swapMs`` and the listeners
``POST /v1/instances/{id}/routable``        body ``{"routable": bool, "version"?: n}``: flip the
                                            default probe of one instance (all its endpoints)
``GET  /v1/listeners``                      the listeners, real ports, backends in rotation
``GET  /metrics``                           Prometheus text: per endpoint and per backend
                                            connections, bytes, connect failures, retries
==========================================  =====================================================

``bootId`` changes on every start of the process: a controller that sees a new ``bootId`` (or a
``version`` lower than it last sent) pushes its table again. The LB also reloads its last table
from its state file on start, so it serves the last routes even before the controller is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from typing import Any

from cumulo.errors import AuthError, CumuloError, InputError, NotFoundError
from cumulo.lb import routes
from cumulo.lb.server import LoadBalancer

MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
_ROUTABLE = re.compile(r"^/v1/instances/([^/]+)/routable$")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"the request body is not valid JSON: {exc}.") from None


class LbApi:
    def __init__(self, lb: LoadBalancer, token: str) -> None:
        if not token:
            raise InputError("the load balancer API needs a token (--token or CUMULO_LB_TOKEN).")
        self.lb = lb
        self.token = token
        self.server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEADER)
        sock_host, sock_port = self.server.sockets[0].getsockname()[:2]
        return sock_host, sock_port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._writers):
                writer.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection (HTTP/1.1 keep-alive, so a controller that keeps its
        connection open pays no TCP handshake per call) until the client closes or asks to."""
        self._writers.add(writer)
        try:
            while True:
                keep = False
                try:
                    request = await self._read(reader)
                    if request is None:
                        break
                    keep = request.headers.get("connection", "").lower() != "close"
                    status, ctype, body = await self._dispatch(request)
                except CumuloError as exc:
                    status, ctype, body = _problem(exc)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                except Exception as exc:  # a bug: answer 500 instead of dropping the connection
                    self.lb.log.error("lb.api.error", error=repr(exc))
                    status, ctype, body = _problem(CumuloError(f"internal error: {exc!r}"))
                head = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                )
                try:
                    writer.write(head.encode("latin-1") + body)
                    await writer.drain()
                except ConnectionError:
                    break
                if not keep:
                    break
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise InputError(f"malformed request line {lines[0]!r}.")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise InputError(f"request body of {length} bytes is over the {MAX_BODY} byte limit.")
        body = await reader.readexactly(length) if length else b""
        return Request(parts[0].upper(), parts[1].split("?", 1)[0], headers, body)

    def _check_token(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise AuthError(
                "the load balancer API needs 'Authorization: Bearer <token>' with the right token."
            )

    async def _dispatch(self, req: Request) -> tuple[int, str, bytes]:
        lb = self.lb
        if req.path == "/healthz" and req.method == "GET":
            return _json({"status": "ok", "bootId": lb.boot_id, "version": lb.table.version})
        self._check_token(req)
        if req.path == "/v1/routes":
            if req.method == "GET":
                return _json({"table": routes.table_to_json(lb.table), **lb.describe()})
            if req.method == "PUT":
                table = routes.parse_table(req.json(), lb.addresses)
                return _json(await lb.apply(table))
        elif req.path == "/v1/swap" and req.method == "POST":
            body = req.json()
            version = body.get("version") if isinstance(body, dict) else None
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise InputError(f"swap: 'version' must be an integer, got {version!r}.")
            return _json(await lb.swap(version))
        elif req.path == "/v1/listeners" and req.method == "GET":
            return _json(lb.describe())
        elif req.path == "/metrics" and req.method == "GET":
            return 200, "text/plain; version=0.0.4", lb.metrics_text().encode()
        elif (m := _ROUTABLE.match(req.path)) and req.method == "POST":
            body = req.json()
            routable = body.get("routable") if isinstance(body, dict) else None
            if not isinstance(routable, bool):
                raise InputError(f"routable: expected true or false, got {routable!r}.")
            version = body.get("version")
            return _json(await lb.set_routable(m.group(1), routable, version))
        else:
            raise NotFoundError(f"no such API route: {req.method} {req.path}.")
        raise NotFoundError(f"method {req.method} is not allowed on {req.path}.")


def _json(value: Any, status: int = 200) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()


def _problem(exc: CumuloError) -> tuple[int, str, bytes]:
    body = {
        "type": "about:blank",
        "title": type(exc).__name__,
        "status": exc.http_status,
        "code": exc.code,
        "detail": exc.message,
    }
    problems = getattr(exc, "problems", None)
    if problems:
        body["problems"] = list(problems)
    return exc.http_status, "application/problem+json", json.dumps(body).encode()
