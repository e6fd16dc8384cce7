"""A tiny HTTP/1.1 keep-alive backend for bench/lb.py (not a test, not a product).

``python bench/lb_backend.py PORT [NAME]`` serves ``GET /`` with a 100-byte body (starting with
NAME, so a client can tell backends apart) and ``GET /big`` with 100 MiB (1 MiB chunks with flow
control); it closes after answering a request with ``Connection: close``. Runs on uvloop.
"""

from __future__ import annotations

import asyncio
import sys

NAME = (sys.argv[2] if len(sys.argv) > 2 else "backend").encode()
BODY = (NAME + b" " + b"x" * 100)[:100]
SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n" + BODY
CLOSING = SMALL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
CHUNK = b"y" * (1 << 20)
BIG_SIZE = 100 << 20


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.left = 0
        self.paused = False

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4 :]
            if head.startswith(b"GET /big"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG_SIZE)
                self.left = BIG_SIZE
                self._pump()
            else:
                if b"onnection: close" in head or b"onnection: Close" in head:
                    self.transport.write(CLOSING)
                    self.transport.close()
                    return
                self.transport.write(SMALL)
        self.buf = buf

    def _pump(self) -> None:
        while self.left and not self.paused:
            n = min(self.left, len(CHUNK))
            self.transport.write(CHUNK if n == len(CHUNK) else CHUNK[:n])
            self.left -= n

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except ImportError:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
