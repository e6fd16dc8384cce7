"""Pure parts of the three services, and the queue's index use (cost flat with depth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumulo.storage.azure.blob import block_list_from_xml, check_block_id, parse_range
from cumulo.storage.azure.common import check_dns_name
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.queue import QueueService, parse_message_text
from cumulo.storage.azure.service_props import ServiceProperties
from cumulo.storage.azure.table import parse_batch, parse_entity


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=90-200", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=100-", 100, None),
        ("bytes=0-0", 0, None),
    ],
)
def test_parse_range(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=5-2", "items=0-1", "bytes=a-b", "bytes=0-1,3-4"])
def test_malformed_ranges_are_invalid_header_value(header: str) -> None:
    with pytest.raises(StorageError) as info:
        parse_range(header, 100)
    assert info.value.code == "InvalidHeaderValue"


def test_block_list_xml() -> None:
    body = (
        b"<?xml version='1.0'?>"
        b"<BlockList><Latest>QQ==</Latest><Committed>Qg==</Committed></BlockList>"
    )
    assert block_list_from_xml(body) == [("Latest", "QQ=="), ("Committed", "Qg==")]
    with pytest.raises(StorageError):
        block_list_from_xml(b"<BlockList><Other>x</Other></BlockList>")
    with pytest.raises(StorageError):
        check_block_id("not base64!")
    with pytest.raises(StorageError):
        check_block_id("QQ" * 100)


@pytest.mark.parametrize("name", ["abc", "a-b-c", "a1" * 31 + "z"])
def test_dns_names_accepted(name: str) -> None:
    check_dns_name("queue", name)


@pytest.mark.parametrize("name", ["ab", "-abc", "abc-", "a--b", "ABC", "a_b", "a" * 64, ""])
def test_dns_names_refused(name: str) -> None:
    with pytest.raises(StorageError) as info:
        check_dns_name("queue", name)
    assert info.value.code == "InvalidResourceName"


def test_message_text_parsing() -> None:
    body = b"<QueueMessage><MessageText>a &lt;b&gt; &amp;</MessageText></QueueMessage>"
    assert parse_message_text(body) == "a <b> &"
    for bad in [b"", b"<x", b"<QueueMessage/>", b"<Other><MessageText/></Other>"]:
        with pytest.raises(StorageError):
            parse_message_text(bad)
    too_big = b"<QueueMessage><MessageText>" + b"a" * 65537 + b"</MessageText></QueueMessage>"
    with pytest.raises(StorageError) as info:
        parse_message_text(too_big)
    assert info.value.code == "MessageTooLarge"


def test_queue_hot_queries_use_indexes(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db")
    QueueService(db, lambda: 0.0, ServiceProperties(db, None))
    plans = {
        "get": "SELECT id FROM messages WHERE qid=1 AND visible<=5 ORDER BY visible, id LIMIT 32",
        "expire": "DELETE FROM messages WHERE qid=1 AND expires<=5",
        "find": "SELECT id, pop FROM messages WHERE qid=1 AND msg_id='x'",
    }
    for name, sql in plans.items():
        detail = " ".join(row[3] for row in db.conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING" in detail and "INDEX" in detail, (name, detail)
        assert "TEMP B-TREE" not in detail, (name, detail)
    db.close()


def test_entity_parsing_types_and_refusals() -> None:
    body = json.dumps(
        {
            "PartitionKey": "p",
            "RowKey": "r",
            "s": "x",
            "i": 5,
            "l@odata.type": "Edm.Int64",
            "l": "12345678901",
            "d": 1.5,
            "b": False,
            "n": None,
            "g@odata.type": "Edm.Guid",
            "g": "D4A4A4A4-0000-0000-0000-000000000001",
            "t@odata.type": "Edm.DateTime",
            "t": "2020-01-01T00:00:00.1234567Z",
        }
    ).encode()
    pk, rk, props = parse_entity(body)
    assert (pk, rk) == ("p", "r")
    assert props["s"] == ["Edm.String", "x"]
    assert props["i"] == ["Edm.Int32", 5]
    assert props["l"] == ["Edm.Int64", 12345678901]
    assert props["d"] == ["Edm.Double", 1.5]
    assert props["b"] == ["Edm.Boolean", False]
    assert "n" not in props
    assert props["g"] == ["Edm.Guid", "d4a4a4a4-0000-0000-0000-000000000001"]
    assert props["t"] == ["Edm.DateTime", "2020-01-01T00:00:00.1234560Z"]
    for bad in [
        b"[1]",
        b"{not json",
        b'{"x@odata.type": "Edm.Int32", "x": "abc"}',
        b'{"x@odata.type": "Edm.Nope", "x": "1"}',
        b'{"bad name": 1}',
    ]:
        with pytest.raises(StorageError):
            parse_entity(bad)


def test_batch_body_parsing() -> None:
    body = (
        b"--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_2\r\n\r\n"
        b"--changeset_2\r\nContent-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n"
        b"POST http://h/acct/tbl HTTP/1.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 33\r\n\r\n{"PartitionKey":"p","RowKey":"r"}\r\n'
        b"--changeset_2\r\nContent-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n"
        b"DELETE http://h/acct/tbl(PartitionKey='p',RowKey='x') HTTP/1.1\r\nIf-Match: *\r\n\r\n\r\n"
        b"--changeset_2--\r\n--batch_1--\r\n"
    )
    ops = parse_batch(body, "multipart/mixed; boundary=batch_1")
    assert [o.method for o in ops] == ["POST", "DELETE"]
    assert ops[0].path == "/acct/tbl"
    assert ops[1].headers["if-match"] == "*"
    with pytest.raises(StorageError):
        parse_batch(b"garbage", "multipart/mixed")


def test_full_durability_leaves_commits_to_one_wal_sync(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db", "full")
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL; sync() does FULL
    with db.write() as conn:
        conn.execute("CREATE TABLE t (x)")
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert db.unsynced
    db.sync()
    db.sync()  # nothing new: no second fdatasync
    assert (db.unsynced, db.syncs) == (False, 1)
    with db.write() as conn:
        conn.execute("SELECT * FROM t").fetchall()
        conn.execute("DELETE FROM t WHERE x = 99")
    assert not db.unsynced  # a transaction that changed nothing needs no sync
    db.close()
    relaxed = Database(tmp_path / "n.db", "normal")
    with relaxed.write() as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert not relaxed.unsynced
    relaxed.close()


def test_the_server_syncs_the_wal_of_an_acknowledged_write(tmp_path: Path) -> None:
    """The commit gate is wired into the listeners (its ordering is tested in test_http)."""
    import asyncio
    import base64
    from email.utils import formatdate

    from cumulo.storage.azure.accounts import DEV_KEY
    from cumulo.storage.azure.auth import shared_key_string, sign
    from cumulo.storage.azure.http import Request, parse_target
    from cumulo.storage.azure.server import StorageApp, StorageSettings, bound_ports, start

    app = StorageApp(StorageSettings(tmp_path, blob_port=0, queue_port=0, table_port=0))
    seen: list[tuple[int, bool]] = []  # (syncs done, unsynced) when the answer arrived

    def signed(method: str, target: str) -> bytes:
        path, raw, query = parse_target(target)
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2026-10-06"}
        req = Request(method, target, path, raw, headers, b"", "", query)
        mac = sign(base64.b64decode(DEV_KEY), shared_key_string(req, "devstoreaccount1"))
        lines = [f"{method} {target} HTTP/1.1", "Content-Length: 0"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Authorization: SharedKey devstoreaccount1:{mac}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def scenario() -> bytes:
        servers = await start(app)
        port = bound_ports(servers)["queue"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(signed("PUT", "/devstoreaccount1/gated"))
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append((app.db.syncs, app.db.unsynced))
        writer.close()
        for srv in servers.values():
            srv.close()
        return head

    head = asyncio.run(scenario())
    app.close()
    assert head.startswith(b"HTTP/1.1 201"), head
    assert seen == [(1, False)]
