"""The L4 data path: accepted client connections piped to backend connections, both ways.

Why this shape (measured in /work/shared/reference/lb-bench.md): ``asyncio.Protocol`` callbacks
on uvloop come within ~10 % of HAProxy ``mode tcp`` for small keep-alive requests, while asyncio
streams cost 1.5-1.8x the CPU. So each connection is a pair of Protocols that write what one
reads into the other, with flow control (a side whose peer's write buffer is full stops reading)
and half-close propagated.

The proxy holds no policy. On accept it asks the listener's current ``Route`` (built by
``cumulo.lb.server`` from the pure route table) whether the remote address passes the ACL and
which backend to use; on a backend failure it reports it and asks again. Retry rule: when the
backend refuses the connection, or resets/closes it before relaying any byte to the client
(even before the client's first bytes arrived: a dying worker closes what it accepted), the
client's bytes so far (kept until the first backend byte, at most ``REPLAY_LIMIT``) are
replayed on another backend, so a crashed instance costs no client a failed connection.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cumulo.lb.balance import Flow

if TYPE_CHECKING:
    from cumulo.lb.server import BackendRuntime

REPLAY_LIMIT = 64 * 1024
PENDING_LIMIT = 256 * 1024


class Route(Protocol):
    """What a listener asks for every new connection (implemented in ``cumulo.lb.server``)."""

    slot: str
    name: str
    idle_timeout: float

    def admit(self, remote_ip: str) -> bool: ...

    def pick(self, flow: Flow, tried: list[BackendRuntime] | None) -> BackendRuntime | None: ...

    def opened(self, conn: ClientConn) -> None: ...

    def connected(self, conn: ClientConn, backend: BackendRuntime) -> None: ...

    def closed(self, conn: ClientConn) -> None: ...

    def release(self, conn: ClientConn) -> None: ...

    def connect_failed(self, backend: BackendRuntime, retried: bool) -> None: ...


class Listener:
    """One listening socket; ``route`` is replaced in place on table changes and swaps."""

    def __init__(self, key: tuple[Any, ...], route: Route, sock: socket.socket) -> None:
        self.key = key
        self.route = route
        self.sock = sock
        self.local: tuple[str, int] = sock.getsockname()[:2]
        self.server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.local

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConn(self), sock=self.sock, backlog=1024
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


def candidate_ports(port: int, attempts: int = 100) -> list[int]:
    """The ports tried for a declared public port, in order: the port itself, then the next ones
    (80 -> 81 -> 82, as Azure's compute emulator walked). 0 means any free port."""
    if port == 0:
        return [0]
    return list(range(port, min(port + attempts, 65536)))


def bind_walking(
    address: str, port: int, *, attempts: int = 100, reuse_port: bool = False
) -> socket.socket:
    """A listening socket on ``address`` at ``port`` or, when that port is taken or not permitted,
    the next free one (``candidate_ports``). A privileged port (< 1024) refused to a non-root
    process continues at port + 8000 (80 -> 8080, 443 -> 8443)."""
    last: OSError | None = None
    candidates = candidate_ports(port, attempts)
    i = 0
    while i < len(candidates):
        candidate = candidates[i]
        i += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address, candidate))
            sock.listen(1024)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                raise
            if exc.errno != errno.EADDRINUSE and candidate < 1024:
                candidates = candidate_ports(candidate + 8000, attempts)
                i = 0
            last = exc
    raise last or OSError(errno.EADDRINUSE, f"no free port from {port} on {address}")


class ClientConn(asyncio.Protocol):
    """The accepted (client) side of one proxied connection."""

    __slots__ = (
        "backend",
        "backend_conn",
        "backend_eof",
        "backend_transport",
        "bytes_in",
        "bytes_out",
        "client_eof",
        "closed",
        "connecting",
        "flow",
        "last",
        "listener",
        "pending",
        "pending_size",
        "replay",
        "replay_size",
        "route",
        "seen",
        "transport",
        "tried",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: Any = None
        self.backend_transport: Any = None
        self.backend_conn: BackendConn | None = None
        self.backend: BackendRuntime | None = None
        self.pending: list[bytes] | None = []
        self.pending_size = 0
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.tried: list[BackendRuntime] | None = None
        self.client_eof = False
        self.backend_eof = False
        self.closed = False
        self.connecting: asyncio.Task[None] | None = None
        self.seen = -1
        self.last = 0.0
        self.bytes_in = 0
        self.bytes_out = 0

    # -- client side callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.route = route = self.listener.route
        peer = transport.get_extra_info("peername")
        if not route.admit(peer[0]):
            self.closed = True
            transport.abort()
            return
        local = self.listener.local
        self.flow = Flow(peer[0], peer[1], local[0], local[1], "tcp")
        route.opened(self)
        self._connect_next()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        bt = self.backend_transport
        if bt is not None:
            bt.write(data)
            replay = self.replay
            if replay is not None:
                self._remember(data)
        else:
            pending = self.pending
            if pending is not None:
                pending.append(data)
                self.pending_size += len(data)
                self._remember(data)
                if self.pending_size > PENDING_LIMIT:  # the backend is slow to answer the connect
                    self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.backend_eof:
            return False  # both directions are done: close
        bt = self.backend_transport
        if bt is not None and bt.can_write_eof():
            bt.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.backend_transport is not None:
            self.backend_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.backend_transport is not None:
            self.backend_transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.backend_transport is not None:
            self.backend_transport.close()
        self._finish()

    # -- helpers

    def _remember(self, data: bytes) -> None:
        replay = self.replay
        if replay is None:
            return
        self.replay_size += len(data)
        if self.replay_size > REPLAY_LIMIT:
            self.replay = None  # too much to replay: no retry after this point
        else:
            replay.append(data)

    def _finish(self) -> None:
        if not self.closed:
            self.closed = True
            self.route.closed(self)

    def abort(self) -> None:
        """Close both sides now (drain timeout, idle timeout, shutdown)."""
        if self.backend_transport is not None:
            self.backend_transport.abort()
        if self.transport is not None:
            self.transport.abort()

    def _connect_next(self) -> None:
        if self.closed or self.transport.is_closing():
            self._finish()
            return
        backend = self.route.pick(self.flow, self.tried)
        if backend is None:
            self.transport.abort()
            self._finish()
            return
        if self.tried is None:
            self.tried = [backend]
        else:
            self.tried.append(backend)
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(self._connect(loop, backend))

    async def _connect(self, loop: asyncio.AbstractEventLoop, backend: BackendRuntime) -> None:
        try:
            await loop.create_connection(
                lambda: BackendConn(self, backend), backend.address, backend.port
            )
        except OSError:
            self._backend_failed(backend)

    def _backend_failed(self, backend: BackendRuntime) -> None:
        """The backend refused, or dropped the connection before relaying a byte: try another."""
        can_retry = self.replay is not None and not self.closed
        if self.backend is not None:
            self.route.release(self)
            self.backend = None
        self.route.connect_failed(backend, can_retry)
        self.backend_transport = None
        self.backend_conn = None
        if not can_retry:
            if self.transport is not None:
                self.transport.abort()
            self._finish()
            return
        self.pending = list(self.replay or [])
        self.pending_size = self.replay_size
        if self.transport is not None:
            self.transport.resume_reading()
        self._connect_next()

    def backend_made(self, conn: BackendConn, transport: Any) -> None:
        if self.closed or self.transport.is_closing():
            transport.abort()
            return
        self.backend_conn = conn
        self.backend_transport = transport
        self.backend = conn.backend
        pending, self.pending = self.pending, None
        if self.pending_size > PENDING_LIMIT:
            self.transport.resume_reading()  # before the write, which may pause it again
        self.pending_size = 0
        if pending:
            transport.write(b"".join(pending))
        if self.client_eof and transport.can_write_eof():
            transport.write_eof()
        self.route.connected(self, conn.backend)


class BackendConn(asyncio.Protocol):
    """The backend side of one proxied connection."""

    __slots__ = ("backend", "client", "client_transport", "relayed", "transport")

    def __init__(self, client: ClientConn, backend: BackendRuntime) -> None:
        self.client = client
        self.backend = backend
        self.client_transport = client.transport
        self.transport: Any = None
        self.relayed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client.backend_made(self, transport)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if not self.relayed:
            self.relayed = True
            client.replay = None  # the backend answered: this connection is committed to it
        client.bytes_out += len(data)
        self.client_transport.write(data)

    def eof_received(self) -> bool:
        if self._unanswered():
            return False  # closed before answering: connection_lost retries elsewhere
        self.client.backend_eof = True
        ct = self.client_transport
        if self.client.client_eof:
            ct.close()
            return False
        if ct.can_write_eof():
            ct.write_eof()
        return True

    def pause_writing(self) -> None:
        self.client_transport.pause_reading()

    def resume_writing(self) -> None:
        self.client_transport.resume_reading()

    def _unanswered(self) -> bool:
        """The backend closed without relaying a byte while the client still waits: its bytes so
        far (or none yet: a dying worker may close before the request reached the LB) go to
        another backend. A client that half-closed without a byte is waiting for nothing."""
        client = self.client
        return (
            not self.relayed
            and client.replay is not None
            and not client.closed
            and (client.bytes_in > 0 or not client.client_eof)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if client.backend_conn is not self:
            return
        if self._unanswered():
            client._backend_failed(self.backend)
            return
        client.backend_transport = None
        self.client_transport.close()


def run_loop(main: Callable[[], Any], *, use_uvloop: bool = True) -> Any:
    """Run ``main()`` (a coroutine function) on uvloop when available, else on asyncio's loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            pass
        else:
            return uvloop.run(main())
    return asyncio.run(main())
