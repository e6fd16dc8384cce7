"""A lean HTTP/1.1 server on asyncio: just what the Azure Storage SDKs speak.

Why hand-rolled: the storage service's per-request cost is dominated by the HTTP layer (the
SQLite work for a queue message is ~50 µs). starlette+uvicorn (h11) measured about 2× slower per
request here than this ``asyncio.Protocol`` (see docs/storage.md, "Server stack"). The SDKs send
well-formed HTTP/1.1 with ``Content-Length`` (chunked bodies are accepted too), keep connections
alive and never pipeline, so the parser stays small.

Handlers are synchronous callables ``(Request) -> Response``: they run on the event loop thread
and do their SQLite and file work directly (one writer, no locks, no thread hops). A
``CommitGate`` holds responses back until the writes they acknowledge are on disk, with one sync
per event-loop iteration for all of them (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cumulo.log import get_logger

MAX_HEADER_BYTES = 64 * 1024

_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    target: str
    """The request target exactly as sent (path and query, still percent-encoded)."""
    raw_path: str
    """The path, still percent-encoded (what SharedKey signs)."""
    raw_query: list[tuple[str, str]]
    """Query parameters as sent: (name, still-encoded value), in order."""
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ','."""
    body: bytes = b""
    peer: str = ""
    query: dict[str, str] = field(default_factory=dict)
    """Query parameters decoded; the last of repeated names wins."""
    body_file: str | None = None
    """A large body spooled to this file while it arrived (``body`` is then empty). The
    handler may rename it away; otherwise it is deleted after the response."""
    body_size: int = 0
    body_md5: bytes | None = None
    """MD5 digest of a spooled body, computed while it arrived."""
    key_range: tuple[str, str, str, str] | None = None
    """A table SAS's (spk, srk, epk, erk): the entities the request may touch."""

    def __post_init__(self) -> None:
        if self.body_file is None:
            self.body_size = len(self.body)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def body_bytes(self) -> bytes:
        """The body in memory (read back from the spool file for a large one)."""
        if self.body_file is None:
            return self.body
        with open(self.body_file, "rb") as fh:
            return fh.read()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


Handler = Callable[[Request], Response]


class CommitGate:
    """Group commit: responses wait until the writes they acknowledge are on disk.

    ``unsynced()`` says whether a committed write still needs ``sync()``. After a handler, a
    response is sent at once when nothing is unsynced and nothing is held; otherwise it is held
    and one flush is scheduled for the end of this event-loop iteration: it runs ``sync()`` once
    and then sends every held response, in the order they were produced. Concurrent writers thus
    share one fsync, and a read never shows a client a write that is not yet durable. When
    ``sync()`` fails, the held responses become 500s: the writes may not survive a power loss.
    """

    def __init__(self, unsynced: Callable[[], bool], sync: Callable[[], None]) -> None:
        self.unsynced = unsynced
        self.sync = sync
        self.held: list[tuple[HttpProtocol, Response, bool, bool]] = []
        self.flushes = 0
        """How many flushes ran (each is one sync for all the responses it released)."""
        self._scheduled = False

    def must_hold(self) -> bool:
        return bool(self.held) or self.unsynced()

    def hold(self, proto: HttpProtocol, response: Response, close: bool, head: bool) -> None:
        self.held.append((proto, response, close, head))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        held, self.held = self.held, []
        failure: OSError | None = None
        try:
            self.sync()
        except OSError as exc:
            failure = exc
            get_logger(component="storage").error("storage.sync_failed", error=str(exc))
        self.flushes += 1
        for proto, response, close, head in held:
            if failure is not None:
                response = proto.failure_response(failure)
            try:
                proto.send(response, close=close, head=head)
            except Exception:  # one broken connection must not keep the others waiting
                get_logger(component="storage").exception("storage.send_failed")


def parse_target(target: str) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """Split a request target into (raw path, raw query pairs, decoded query dict)."""
    path, _, qs = target.partition("?")
    raw: list[tuple[str, str]] = []
    decoded: dict[str, str] = {}
    if qs:
        for part in qs.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            raw.append((name, value))
            decoded[unquote(name)] = unquote(value)
    return path, raw, decoded


class _DateCache:
    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        return self._value


_DATE = _DateCache()


def http_date() -> str:
    """The current time as an RFC 1123 date (cached per second)."""
    return _DATE.get()


class BadRequest(Exception):
    """The bytes on the wire are not HTTP we accept; answer with ``status`` and close."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class HttpProtocol(asyncio.Protocol):
    """One connection: parse requests, call the handler, write responses (keep-alive)."""

    def __init__(
        self,
        handler: Handler,
        error_handler: Callable[[BadRequest], Response],
        max_body: int,
        spool_dir: str | None = None,
        spool_threshold: int = 256 * 1024,
        gate: CommitGate | None = None,
    ) -> None:
        self._gate = gate
        self._spool_dir = spool_dir
        self._spool_threshold = spool_threshold
        # (fd, path, md5, bytes still to come) while a large body streams to a file.
        self._spool: tuple[int, str, Any, int] | None = None
        self._handler = handler
        self._error_handler = error_handler
        self._max_body = max_body
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        # The request whose head is parsed and whose body is being read.
        self._pending: tuple[str, str, dict[str, str]] | None = None
        self._need = 0
        self._chunked = False
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._transport = None
        self._drop_spool()

    def _drop_spool(self) -> None:
        if self._spool is not None:
            fd, path, _md5, _left = self._spool
            self._spool = None
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            self._process()
        except BadRequest as exc:
            self._respond(self._error_handler(exc), close=True)

    # -- parsing -----------------------------------------------------------------------------

    def _process(self) -> None:
        while not self._closed:
            if self._pending is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BYTES:
                        raise BadRequest(431, "RequestHeaderFieldsTooLarge", "Headers too large.")
                    return
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                self._parse_head(head)
            if self._spool is not None:
                if not self._feed_spool():
                    return
                continue
            if self._chunked:
                body = self._take_chunked()
                if body is None:
                    return
            else:
                if len(self._buf) < self._need:
                    return
                body = bytes(self._buf[: self._need])
                del self._buf[: self._need]
            assert self._pending is not None
            method, target, headers = self._pending
            self._pending = None
            self._dispatch(method, target, headers, body)

    def _parse_head(self, head: bytes) -> None:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
            raise BadRequest(400, "InvalidHttpRequest", "Unreadable request head.") from exc
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "InvalidHttpRequest", f"Bad request line {lines[0][:80]!r}.")
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(400, "InvalidHttpRequest", f"Bad header line {line[:80]!r}.")
            key = name.strip().lower()
            value = value.strip()
            if key in headers:
                headers[key] = headers[key] + "," + value
            else:
                headers[key] = value
        te = headers.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise BadRequest(
                    501, "NotImplemented", f"Transfer-Encoding {te!r} is not supported."
                )
            self._chunked = True
            self._need = 0
        else:
            self._chunked = False
            cl = headers.get("content-length", "0") or "0"
            if not cl.isdigit():
                raise BadRequest(
                    400, "InvalidHeaderValue", f"Content-Length {cl!r} is not a number."
                )
            self._need = int(cl)
            if self._need > self._max_body:
                raise BadRequest(
                    413,
                    "RequestBodyTooLarge",
                    f"The request body is too large ({self._need} bytes; "
                    f"the limit is {self._max_body}).",
                )
        if headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._pending = (method, target, headers)
        if not self._chunked and self._spool_dir and self._need >= self._spool_threshold:
            path = os.path.join(self._spool_dir, f".incoming-{uuid.uuid4().hex}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._spool = (fd, path, hashlib.md5(), self._need)

    def _feed_spool(self) -> bool:
        """Move buffered body bytes to the spool file; True once the whole body is there."""
        assert self._spool is not None
        fd, path, md5, left = self._spool
        if self._buf and left:
            chunk = self._buf[:left] if len(self._buf) > left else self._buf
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            md5.update(chunk)
            left -= len(chunk)
            if chunk is self._buf:
                self._buf = bytearray()
            else:
                del self._buf[: len(chunk)]
            self._spool = (fd, path, md5, left)
        if left:
            return False
        os.close(fd)
        self._spool = None
        assert self._pending is not None
        method, target, headers = self._pending
        self._pending = None
        try:
            self._dispatch(
                method, target, headers, b"", body_file=path, body_md5=md5.digest(),
                body_size=self._need,
            )  # fmt: skip
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return True

    def _take_chunked(self) -> bytes | None:
        """Decode a complete chunked body from the buffer, or None if more bytes are needed."""
        pos = 0
        out = bytearray()
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = bytes(buf[pos:eol]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise BadRequest(400, "InvalidHttpRequest", "Bad chunk size.") from exc
            pos = eol + 2
            if size == 0:
                end = buf.find(b"\r\n\r\n", pos - 2)
                if end < 0:
                    return None
                del buf[: end + 4]
                self._chunked = False
                return bytes(out)
            if len(buf) < pos + size + 2:
                return None
            out += buf[pos : pos + size]
            if len(out) > self._max_body:
                raise BadRequest(413, "RequestBodyTooLarge", "The request body is too large.")
            pos += size + 2

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        body_file: str | None = None,
        body_md5: bytes | None = None,
        body_size: int | None = None,
    ) -> None:
        raw_path, raw_query, query = parse_target(target)
        request = Request(
            method=method,
            target=target,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
            peer=self._peer,
            query=query,
            body_file=body_file,
            body_size=len(body) if body_size is None else body_size,
            body_md5=body_md5,
        )
        response = self._handler(request)
        close = headers.get("connection", "").lower() == "close"
        self._respond(response, close=close, head=method == "HEAD")

    def _respond(self, response: Response, *, close: bool, head: bool = False) -> None:
        """Send now, or hold the response in the commit gate until its write is durable."""
        gate = self._gate
        if gate is not None and gate.must_hold():
            if close:
                self._closed = True  # parse nothing more from this connection
            gate.hold(self, response, close, head)
        else:
            self.send(response, close=close, head=head)

    def failure_response(self, exc: OSError) -> Response:
        """What a held response becomes when the sync of its write failed."""
        return self._error_handler(
            BadRequest(
                500,
                "InternalError",
                f"The write could not be made durable ({exc.strerror or exc}); it may be lost.",
            )
        )

    def send(self, response: Response, *, close: bool, head: bool = False) -> None:
        """Write the response to the connection now (and close it when ``close``)."""
        transport = self._transport
        if transport is None:
            return
        reason = _REASONS.get(response.status, "Unknown")
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        has_length = False
        for name, value in response.headers:
            if name == "Content-Length":
                has_length = True
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(response.body)}")
        if close:
            lines.append("Connection: close")
        lines.append("")
        lines.append("")
        head_bytes = "\r\n".join(lines).encode("latin-1")
        if not response.body or head:
            transport.write(head_bytes)
        elif len(response.body) <= 65536:
            transport.write(head_bytes + response.body)  # one segment, one syscall
        else:
            transport.write(head_bytes)
            transport.write(response.body)
        if close:
            self._closed = True
            transport.close()


async def serve(
    handler: Handler,
    error_handler: Callable[[BadRequest], Response],
    host: str,
    port: int,
    *,
    max_body: int,
    spool_dir: str | None = None,
    gate: CommitGate | None = None,
) -> asyncio.Server:
    """Start listening; returns the asyncio server (its socket tells the bound port).

    With ``spool_dir``, bodies of 256 KiB or more stream to a file there as they arrive; with
    ``gate``, responses wait for the writes they acknowledge to be synced (group commit).
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(handler, error_handler, max_body, spool_dir, gate=gate),
        host=host,
        port=port,
        reuse_address=True,
        backlog=1024,
    )
    get_logger(component="storage").debug("storage.listening", host=host, port=port)
    return server
