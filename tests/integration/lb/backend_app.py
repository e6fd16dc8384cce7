"""A tiny HTTP/1.1 backend for the load balancer tests: answers every request with its name.

Run as a process: ``python backend_app.py NAME`` prints ``PORT`` on stdout once it listens on
127.0.0.1 (port 0). ``GET /health`` answers 200, or 503 while the file named by
``--sick-file`` exists (for custom-probe tests), after ``$BACKEND_HEALTH_DELAY`` seconds.
``python backend_app.py --echo`` is a TCP echo server instead, answering a half-close with
``BYE``; ``python backend_app.py --closer`` accepts every connection and closes it at once
without a byte, as a dying site worker does.
"""

from __future__ import annotations

import asyncio
import os
import sys


class Http(asyncio.Protocol):
    def __init__(self, name: bytes, sick_file: str | None) -> None:
        self.name = name
        self.sick_file = sick_file
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1] if b" " in head else b"/"
            status, body = b"200 OK", self.name
            if path == b"/health" and self.sick_file and os.path.exists(self.sick_file):
                status, body = b"503 Service Unavailable", b"sick"
            answer = (
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nContent-Type: text/plain\r\n\r\n"
                + body
            )
            delay = float(os.environ.get("BACKEND_HEALTH_DELAY", "0")) if path == b"/health" else 0
            write = self.transport.write  # type: ignore[attr-defined]
            if delay:  # a slow health check
                asyncio.get_running_loop().call_later(delay, write, answer)
            else:
                write(answer)


class Echo(asyncio.Protocol):
    """Echoes every byte; on the client's half-close answers b"BYE" and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write(b"BYE")
        self.transport.close()
        return True


class Closer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def main() -> None:
    if sys.argv[1] in ("--echo", "--closer"):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            Echo if sys.argv[1] == "--echo" else Closer, "127.0.0.1", 0
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()
    name = sys.argv[1].encode()
    sick = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--sick-file" else None
    loop = asyncio.get_running_loop()
    port = int(os.environ.get("BACKEND_PORT", "0"))  # a restarted instance keeps its port
    server = await loop.create_server(
        lambda: Http(name, sick), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
