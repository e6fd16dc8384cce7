"""The storage service process: three listeners (blob, queue, table) over one SQLite database.

``StorageSettings`` says where and how; ``StorageApp`` turns a request into a response (find the
account, route, authenticate, run, add Azure's standard headers, map errors to Azure's wire
form); ``run_forever`` listens until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from cumulo.errors import ConflictError, CumuloError
from cumulo.log import get_logger
from cumulo.storage.azure.accounts import Account, account_table, make_account
from cumulo.storage.azure.auth import Need, authenticate
from cumulo.storage.azure.blob import BlobService
from cumulo.storage.azure.common import XML_HEAD, new_guid, xml_text
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import (
    BadRequest,
    CommitGate,
    Request,
    Response,
    http_date,
    serve,
)
from cumulo.storage.azure.queue import QueueService
from cumulo.storage.azure.service_props import ServiceProperties
from cumulo.storage.azure.table import TableService

DEFAULT_VERSION = "2026-02-06"


@dataclass
class StorageSettings:
    """How the storage service runs."""

    data_dir: Path
    """Where the database (``storage.db``) and blob contents (``blobs/``) live."""
    host: str = "127.0.0.1"
    """Address the three listeners bind (loopback by default: roles run on this machine)."""
    blob_port: int = 10000
    """Blob endpoint port (10000 is what ``UseDevelopmentStorage=true`` means); 0 picks one."""
    queue_port: int = 10001
    """Queue endpoint port (10001 for ``UseDevelopmentStorage=true``); 0 picks one."""
    table_port: int = 10002
    """Table endpoint port (10002 for ``UseDevelopmentStorage=true``); 0 picks one."""
    durability: str = "full"
    """``full``: fsync before acknowledging (default); ``normal``: survive a killed process
    but maybe not power loss; ``off``: benchmarks only."""
    accounts: tuple[Account, ...] = ()
    """Accounts besides ``devstoreaccount1`` (which is always there)."""
    max_body: int = 256 * 1024 * 1024
    """Largest request body accepted, in bytes (a Put Blob or Put Block; 413 beyond)."""
    ready_file: Path | None = None
    """If set, the bound ports are written there as JSON once listening (for tests/tools)."""
    accounts_file: Path | None = None
    """A JSON object ``{"name": "base64 key", ...}`` re-read when it changes (checked at most
    once a second): how the platform adds a service's account without a restart."""
    loop: str = "auto"
    """Event loop: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``."""


class Service(Protocol):
    name: str

    def route(
        self, req: Request, account: str, parts: list[str]
    ) -> tuple[Need, Callable[[], Response]]: ...

    def stored_policy(self, account: str, need: Need, identifier: str) -> dict[str, str] | None:
        """The stored access policy ``identifier`` on the resource ``need`` names."""


def error_body(service: str, code: str, message: str, request_id: str) -> tuple[str, bytes]:
    """(content type, body) of an Azure error in the service's wire format."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    full = f"{message}\nRequestId:{request_id}\nTime:{stamp}"
    if service == "table":
        doc = {"odata.error": {"code": code, "message": {"lang": "en-US", "value": full}}}
        return "application/json;odata=minimalmetadata;streaming=true;charset=utf-8", json.dumps(
            doc
        ).encode()
    body = (
        f"{XML_HEAD}<Error><Code>{xml_text(code)}</Code><Message>{xml_text(full)}</Message></Error>"
    )
    return "application/xml", body.encode("utf-8")


class StorageApp:
    """The request pipeline shared by the three services."""

    def __init__(self, settings: StorageSettings, now: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.log = get_logger(component="storage")
        self.accounts = account_table(settings.accounts)
        self._accounts_checked = 0.0
        self._accounts_mtime: float | None = None
        self._reload_accounts()
        self.requests = 0
        """Requests answered since start (logged at stop with the number of WAL syncs)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.data_dir / "storage.db", settings.durability)
        self.props = ServiceProperties(self.db, now)
        self.services: dict[str, Service] = {"queue": QueueService(self.db, now, self.props)}
        blob = BlobService(self.db, now, self.props, settings.data_dir / "blobs")
        blob.accounts = lambda: self.accounts
        self.services["blob"] = blob
        self.services["table"] = TableService(self.db, now, self.props)
        db = self.db
        self.gate: CommitGate | None = (
            CommitGate(lambda: db.unsynced, db.sync) if db.group_commit else None
        )
        """Holds responses until their writes are synced (one gate for the three services)."""

    def close(self) -> None:
        self.db.close()

    def _reload_accounts(self) -> None:
        """Re-read ``accounts_file`` if it changed; a bad file is logged and ignored."""
        path = self.settings.accounts_file
        if path is None:
            return
        now = time.monotonic()
        if now - self._accounts_checked < 1.0 and self._accounts_mtime is not None:
            return
        self._accounts_checked = now
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._accounts_mtime:
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("the file must hold a JSON object of name -> key")
            extra = [make_account(str(name), str(key)) for name, key in doc.items()]
        except (ValueError, OSError, CumuloError) as exc:
            self.log.error("storage.accounts_file_invalid", path=str(path), error=str(exc))
            self._accounts_mtime = mtime
            return
        self._accounts_mtime = mtime
        self.accounts = account_table([*self.settings.accounts, *extra])
        self.log.info("storage.accounts_loaded", path=str(path), accounts=sorted(self.accounts))

    def handler(self, service: str) -> Callable[[Request], Response]:
        impl = self.services[service]

        def handle(req: Request) -> Response:
            self.requests += 1
            request_id = new_guid()
            try:
                response = self._handle(impl, req)
            except StorageError as exc:
                response = self._error(service, exc.http_status, exc.code, exc.message, request_id)
                response.headers.extend(exc.extra_headers)
            except Exception:
                self.log.exception("storage.internal_error", method=req.method, path=req.raw_path)
                response = self._error(
                    service,
                    500,
                    "InternalError",
                    "The server encountered an internal error.",
                    request_id,
                )
            headers = response.headers
            headers.append(("x-ms-request-id", request_id))
            headers.append(("x-ms-version", req.headers.get("x-ms-version") or DEFAULT_VERSION))
            headers.append(("Date", http_date()))
            client_id = req.headers.get("x-ms-client-request-id")
            if client_id:
                headers.append(("x-ms-client-request-id", client_id))
            headers.append(("Server", "cumulo-storage"))
            if response.status >= 400:
                self.log.debug(
                    "storage.request_refused",
                    service=service,
                    method=req.method,
                    path=req.raw_path,
                    status=response.status,
                    request_id=request_id,
                )
            return response

        return handle

    def _handle(self, impl: Service, req: Request) -> Response:
        path = req.raw_path
        if not path.startswith("/"):
            raise StorageError(400, "InvalidUri", f"The request URI {path[:100]!r} is invalid.")
        segments = path[1:].split("/")
        account_name = unquote(segments[0])
        self._reload_accounts()
        account = self.accounts.get(account_name)
        if account is None:
            raise StorageError(
                400 if not account_name else 403,
                "InvalidUri" if not account_name else "AuthenticationFailed",
                f"The storage account {account_name!r} does not exist on this service.",
            )
        rest = segments[1:]
        if rest and rest[-1] == "" and impl.name != "blob":
            rest = rest[:-1]
        parts = [unquote(s) for s in rest] if impl.name != "blob" else rest
        need, run = impl.route(req, account_name, parts)
        if "si" in req.query and need.policy is None:
            base = need
            need = dataclasses.replace(
                need, policy=lambda si: impl.stored_policy(account_name, base, si)
            )
        authenticate(req, account, impl.name, need)
        return run()

    def _error(
        self, service: str, status: int, code: str, message: str, request_id: str
    ) -> Response:
        ctype, body = error_body(service, code, message, request_id)
        return Response(status, [("Content-Type", ctype), ("x-ms-error-code", code)], body)

    def bad_request_handler(self, service: str) -> Callable[[BadRequest], Response]:
        def handle(exc: BadRequest) -> Response:
            request_id = new_guid()
            response = self._error(service, exc.status, exc.code, exc.message, request_id)
            response.headers.append(("x-ms-request-id", request_id))
            response.headers.append(("Date", http_date()))
            return response

        return handle


async def start(app: StorageApp) -> dict[str, asyncio.Server]:
    s = app.settings
    servers: dict[str, asyncio.Server] = {}
    for service, port in (("blob", s.blob_port), ("queue", s.queue_port), ("table", s.table_port)):
        try:
            servers[service] = await serve(
                app.handler(service),
                app.bad_request_handler(service),
                s.host,
                port,
                max_body=s.max_body,
                spool_dir=str(s.data_dir / "blobs") if service == "blob" else None,
                gate=app.gate,
            )
        except OSError as exc:
            for srv in servers.values():
                srv.close()
            raise ConflictError(
                f"The {service} service cannot listen on {s.host}:{port}: "
                f"{exc.strerror or exc} (is another storage service or Azurite running?)."
            ) from None
    return servers


def bound_ports(servers: dict[str, asyncio.Server]) -> dict[str, int]:
    return {name: int(srv.sockets[0].getsockname()[1]) for name, srv in servers.items()}


def run(settings: StorageSettings) -> None:
    """Run the service in this thread until SIGTERM/SIGINT (uvloop when available)."""
    if settings.loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if settings.loop == "uvloop":
                raise
        else:
            uvloop.run(run_forever(settings))
            return
    asyncio.run(run_forever(settings))


async def run_forever(settings: StorageSettings) -> None:
    """Serve until SIGTERM or SIGINT; then close listeners and the database cleanly."""
    log = get_logger(component="storage")
    app = StorageApp(settings)
    try:
        servers = await start(app)
    except BaseException:
        app.close()
        raise
    ports = bound_ports(servers)
    if settings.ready_file is not None:
        tmp = settings.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"host": settings.host, **ports}))
        os.replace(tmp, settings.ready_file)
    log.info(
        "storage.started",
        host=settings.host,
        data_dir=str(settings.data_dir),
        durability=settings.durability,
        accounts=sorted(app.accounts),
        **ports,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers.values():
        srv.close()
    for srv in servers.values():
        await srv.wait_closed()
    app.close()
    log.info("storage.stopped", requests=app.requests, wal_syncs=app.db.syncs)
