"""The HTTP/1.1 parser: fragmented heads, bodies, chunked encoding and refusals."""

from __future__ import annotations

import asyncio

from cumulo.storage.azure.http import (
    BadRequest,
    CommitGate,
    HttpProtocol,
    Request,
    Response,
    parse_target,
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1234) if name == "peername" else default


def _protocol(max_body: int = 1000) -> tuple[HttpProtocol, FakeTransport, list[Request]]:
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200, [("X", "1")], b"ok")

    def on_error(exc: BadRequest) -> Response:
        return Response(exc.status, [("x-ms-error-code", exc.code)], b"")

    proto = HttpProtocol(handler, on_error, max_body)
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport, seen


def test_parse_target_keeps_raw_and_decodes() -> None:
    path, raw, decoded = parse_target("/a/b%20c?x=1%2B2&flag&y=")
    assert path == "/a/b%20c"
    assert raw == [("x", "1%2B2"), ("flag", ""), ("y", "")]
    assert decoded == {"x": "1+2", "flag": "", "y": ""}


def test_request_split_across_packets_with_body() -> None:
    proto, transport, seen = _protocol()
    data = b"PUT /acct/q HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
    for i in range(0, len(data), 7):
        proto.data_received(data[i : i + 7])
    assert len(seen) == 1
    assert seen[0].body == b"hello"
    assert seen[0].headers["x-a"] == "1,2"
    assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.out.endswith(b"\r\n\r\nok")


def test_two_requests_in_one_packet_keep_alive() -> None:
    proto, transport, seen = _protocol()
    one = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    proto.data_received(one + one)
    assert len(seen) == 2
    assert transport.out.count(b"HTTP/1.1 200") == 2
    assert not transport.closed


def test_chunked_body() -> None:
    proto, _transport, seen = _protocol()
    proto.data_received(
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    assert seen[0].body == b"abcde"


def test_oversized_body_is_413_and_closes() -> None:
    proto, transport, seen = _protocol(max_body=10)
    proto.data_received(b"PUT /a HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert seen == []
    assert transport.out.startswith(b"HTTP/1.1 413")
    assert b"RequestBodyTooLarge" in transport.out
    assert transport.closed


def test_garbage_is_400() -> None:
    proto, transport, _seen = _protocol()
    proto.data_received(b"NONSENSE\r\n\r\n")
    assert transport.out.startswith(b"HTTP/1.1 400")
    assert transport.closed


def test_bad_content_length_is_400() -> None:
    proto, transport, _seen = _protocol()
    proto.data_received(b"PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    assert transport.out.startswith(b"HTTP/1.1 400")


def test_connection_close_is_honoured() -> None:
    proto, transport, _seen = _protocol()
    proto.data_received(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in transport.out
    assert transport.closed


def test_large_bodies_stream_to_a_spool_file_with_their_md5(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    seen: list[tuple[bytes, bytes | None, int]] = []

    def handler(req: Request) -> Response:
        if req.body_file is not None:
            assert req.body == b""
            seen.append((req.body_bytes(), req.body_md5, req.body_size))
        return Response(201)

    proto = HttpProtocol(handler, lambda e: Response(400), 10_000, str(tmp_path), 100)
    transport = FakeTransport()
    proto.connection_made(transport)
    body = bytes(range(256)) * 2
    data = b"PUT /a HTTP/1.1\r\nContent-Length: 512\r\n\r\n" + body + b"GET /b HTTP/1.1\r\n\r\n"
    for i in range(0, len(data), 50):
        proto.data_received(data[i : i + 50])
    assert seen == [(body, hashlib.md5(body).digest(), 512)]
    assert transport.out.count(b"HTTP/1.1 201") == 2
    assert list(tmp_path.iterdir()) == []  # the spool file is gone after the response


def test_a_dropped_connection_removes_its_partial_spool_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proto = HttpProtocol(
        lambda r: Response(201), lambda e: Response(400), 10_000, str(tmp_path), 100
    )
    proto.connection_made(FakeTransport())
    proto.data_received(b"PUT /a HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 300)
    assert len(list(tmp_path.iterdir())) == 1
    proto.connection_lost(None)
    assert list(tmp_path.iterdir()) == []


class _Disk:
    """A database stand-in: handlers commit (unsynced), sync() makes it durable."""

    def __init__(self, events: list[str], fail: bool = False) -> None:
        self.unsynced = False
        self.events = events
        self.fail = fail

    def sync(self) -> None:
        self.events.append("sync")
        if self.fail:
            raise OSError(5, "Input/output error")
        self.unsynced = False


class _RecordingTransport(FakeTransport):
    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__()
        self.name = name
        self.events = events

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(f"write {self.name}")
        super().write(data)


def _gated(disk: _Disk, gate: CommitGate, name: str) -> tuple[HttpProtocol, _RecordingTransport]:
    def handler(req: Request) -> Response:
        if req.method == "POST":
            disk.unsynced = True  # the handler committed a write
        return Response(201 if req.method == "POST" else 200, [], b"ok")

    def on_error(exc: BadRequest) -> Response:
        return Response(exc.status, [("x-ms-error-code", exc.code)], b"")

    proto = HttpProtocol(handler, on_error, 1000, gate=gate)
    transport = _RecordingTransport(name, disk.events)
    proto.connection_made(transport)
    return proto, transport


POST = b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
GET = b"GET /a HTTP/1.1\r\n\r\n"


def test_writes_of_one_loop_iteration_share_one_sync_before_any_answer() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        disk = _Disk(events)
        gate = CommitGate(lambda: disk.unsynced, disk.sync)
        a, _ta = _gated(disk, gate, "a")
        b, _tb = _gated(disk, gate, "b")
        c, _tc = _gated(disk, gate, "c")
        a.data_received(POST)
        b.data_received(POST)
        c.data_received(GET)  # a read after unsynced writes waits too: it may show them
        assert events == []  # nothing answered before the writes are durable
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        a.data_received(GET)  # nothing unsynced, nothing held: answered at once
        return events

    assert asyncio.run(scenario()) == ["sync", "write a", "write b", "write c", "write a"]


def test_a_failed_sync_answers_500_instead_of_acknowledging() -> None:
    async def scenario() -> bytes:
        events: list[str] = []
        disk = _Disk(events, fail=True)
        gate = CommitGate(lambda: disk.unsynced, disk.sync)
        proto, transport = _gated(disk, gate, "a")
        proto.data_received(POST)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return bytes(transport.out)

    out = asyncio.run(scenario())
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b"x-ms-error-code: InternalError" in out
