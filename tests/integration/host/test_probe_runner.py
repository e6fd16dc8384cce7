"""The probe runner against real sockets: tcp connect, http 200 on a path, failures named."""

from __future__ import annotations

import asyncio

from cumulo.host.guest import run_probe
from cumulo.state.spec import ProbeSpec


def test_tcp_and_http_probes() -> None:
    async def body() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readline()
            status = "200 OK" if b" /ok " in request else "503 Service Unavailable"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            tcp = ProbeSpec("t", "tcp")
            assert await run_probe(tcp, "127.0.0.1", port, 1.0) == (True, "")
            ok = ProbeSpec("h", "http", path="/ok")
            assert await run_probe(ok, "127.0.0.1", port, 1.0) == (True, "")
            bad = ProbeSpec("h", "http", path="/bad")
            assert await run_probe(bad, "127.0.0.1", port, 1.0) == (
                False,
                "GET /bad answered 503 Service Unavailable",
            )
        finally:
            server.close()
            await server.wait_closed()
        refused, why = await run_probe(tcp, "127.0.0.1", port, 1.0)
        assert not refused and why.startswith(f"connect 127.0.0.1:{port}:")

    asyncio.run(body())
