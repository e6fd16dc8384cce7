"""A hosted site sends a small response's header block and body in one write.

A site killed between two writes leaves the load balancer holding headers without their body:
an answer it can neither finish nor replay. Both servers of ``cumulo_sitehost`` are made to send
headers with the first body bytes; these tests drive the real gunicorn response and the real
uvicorn protocol over real loopback sockets and record every write that reaches the socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cumulo.host import sitehost


class Recorder:
    """Passes every write through to the real socket or transport, and remembers it."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.target.sendall(data)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.target.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def gunicorn_coalescing() -> Iterator[None]:
    from gunicorn.http import wsgi

    original = wsgi.Response
    sitehost.coalesce_gunicorn_responses()
    try:
        yield
    finally:
        wsgi.Response = original


def _gunicorn_exchange(body_parts: list[bytes], method: str = "GET") -> tuple[list[bytes], bytes]:
    """One request through gunicorn's own parser and response; returns (socket writes, reply)."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    cfg = Config()
    client, server = socket.socketpair()
    with client, server:
        client.sendall(f"{method} / HTTP/1.1\r\nHost: site\r\n\r\n".encode())
        request = next(RequestParser(cfg, server, ("127.0.0.1", 1)))
        recorder = Recorder(server)
        response, _ = wsgi.create(request, recorder, ("127.0.0.1", 1), ("127.0.0.1", 80), cfg)
        size = sum(map(len, body_parts))
        response.start_response("200 OK", [("Content-Length", str(size))])
        for part in body_parts:
            response.write(part)
        response.close()
        reply = _read_response(client) if method != "HEAD" else client.recv(65536)
    return recorder.writes, reply


@pytest.mark.usefixtures("gunicorn_coalescing")
def test_gunicorn_sends_headers_and_a_small_body_in_one_write() -> None:
    writes, reply = _gunicorn_exchange([b"version 1 Web_IN_0"])
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\nversion 1 Web_IN_0")
    assert reply == writes[0]


@pytest.mark.usefixtures("gunicorn_coalescing")
def test_gunicorn_body_in_parts_and_bodiless_answers_still_arrive_whole() -> None:
    writes, reply = _gunicorn_exchange([b"one ", b"two"])
    assert len(writes) == 2 and writes[0].endswith(b"\r\n\r\none ")
    assert reply.endswith(b"\r\n\r\none two")

    writes, reply = _gunicorn_exchange([], method="HEAD")
    assert len(writes) == 1 and reply == writes[0] and reply.endswith(b"\r\n\r\n")


@pytest.mark.usefixtures("gunicorn_coalescing")
def test_gunicorn_large_body_is_not_copied_behind_the_headers() -> None:
    big = b"x" * (sitehost.COALESCE_LIMIT + 1)
    writes, reply = _gunicorn_exchange([big])
    assert [len(w) for w in writes][1:] == [len(big)]
    assert writes[0].endswith(b"\r\n\r\n") and reply.endswith(big)


def test_uvicorn_sends_headers_and_a_small_body_in_one_write() -> None:
    import uvicorn
    from uvicorn.protocols.http import httptools_impl

    original = httptools_impl.RequestResponseCycle
    sitehost.coalesce_uvicorn_responses()
    coalescing = httptools_impl.RequestResponseCycle
    recorders: list[Recorder] = []

    class Spied(coalescing):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            recorder = Recorder(self.held._sock)
            self.held._sock = recorder
            recorders.append(recorder)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b"version 1 Web_IN_0"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    httptools_impl.RequestResponseCycle = Spied
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listener]),))
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: site\r\n\r\n")
            reply = _read_response(client)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        httptools_impl.RequestResponseCycle = original
    assert len(recorders) == 1 and len(recorders[0].writes) == 1, recorders[0].writes
    assert recorders[0].writes[0] == reply
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(
        b"\r\n\r\nversion 1 Web_IN_0"
    )


@pytest.mark.parametrize(
    "request_line,status", [(b"HEAD /x.css", b"200"), (b"GET /empty", b"204")], ids=["head", "204"]
)
def test_uvicorn_bodiless_answer_on_a_closing_connection_keeps_its_headers(
    request_line: bytes, status: bytes
) -> None:
    """A response without body bytes on a ``Connection: close`` request: uvicorn closes the
    transport right after the last send, so the held header block must leave before that."""
    import uvicorn
    from uvicorn.protocols.http import httptools_impl

    original = httptools_impl.RequestResponseCycle
    sitehost.coalesce_uvicorn_responses()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        code = 204 if scope["path"] == "/empty" else 200
        headers = [] if code == 204 else [(b"content-length", b"19")]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listener]),))
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as client:
            client.settimeout(10)
            client.sendall(request_line + b" HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        httptools_impl.RequestResponseCycle = original
    assert reply.startswith(b"HTTP/1.1 " + status), reply
    assert reply.endswith(b"\r\n\r\n")
