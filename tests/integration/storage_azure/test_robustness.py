"""Bad input gets Azure's 4xx codes, never a 500 and never a broken store; accounts file."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.queue import (
    QueueServiceClient,
)

from .conftest import DEV_KEY, Endpoints, StorageProcess

pytestmark = pytest.mark.cumulo_only


def _sas() -> str:
    """An account SAS for all three services (the blob SDK can name the services)."""
    from azure.storage.blob import AccountSasPermissions as BlobPerms
    from azure.storage.blob import ResourceTypes as BlobTypes
    from azure.storage.blob import generate_account_sas as blob_account_sas

    return blob_account_sas(
        "devstoreaccount1",
        DEV_KEY,
        resource_types=BlobTypes(service=True, container=True, object=True),
        permission=BlobPerms(
            read=True, write=True, add=True, process=True, list=True, create=True, delete=True,
            update=True,
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
        services="bqt",
    )  # fmt: skip


def _make_targets(storage: Endpoints) -> None:
    """The queue, container and table the bad requests aim at (created once)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    cs = storage.connection_string()
    for create in (
        lambda: QueueServiceClient.from_connection_string(cs).create_queue("qq1"),
        lambda: BlobServiceClient.from_connection_string(cs).create_container("cc1"),
        lambda: TableServiceClient.from_connection_string(cs).create_table("tt1"),
    ):
        with contextlib.suppress(ResourceExistsError):
            create()


CASES = [
    ("queue", "GET", "/devstoreaccount1/?comp=nonsense", b"", {}),
    ("queue", "PATCH", "/devstoreaccount1/qq1", b"", {}),
    ("queue", "PUT", "/devstoreaccount1/qq1?comp=acl", b"<bad", {}),
    ("queue", "PUT", "/devstoreaccount1/qq1?comp=metadata", b"", {"x-ms-meta-1bad": "x"}),
    ("queue", "POST", "/devstoreaccount1/qq1/messages?messagettl=0", b"", {}),
    ("queue", "POST", "/devstoreaccount1/qq1/messages?messagettl=x", b"", {}),
    ("queue", "PUT", "/devstoreaccount1/qq1/messages/abc", b"", {}),
    ("queue", "GET", "/devstoreaccount1/qq1/messages/a/b/c", b"", {}),
    ("queue", "PUT", "/devstoreaccount1/?restype=service&comp=properties", b"<x", {}),
    ("blob", "GET", "/devstoreaccount1/nocontainer/blob", b"", {}),
    ("blob", "PUT", "/devstoreaccount1/cc1?restype=container&comp=acl", b"<a>", {}),
    ("blob", "GET", "/devstoreaccount1/cc1?restype=container&comp=list&maxresults=0", b"", {}),
    ("blob", "PUT", "/devstoreaccount1/cc1/b", b"x", {"x-ms-blob-type": "PageBlob"}),
    ("blob", "PUT", "/devstoreaccount1/cc1/b?comp=blocklist", b"<BlockList><Latest>", {}),
    ("blob", "PUT", "/devstoreaccount1/cc1/b?comp=appendblock", b"x", {}),
    ("blob", "GET", "/devstoreaccount1/cc1/b?comp=blocklist&blocklisttype=odd", b"", {}),
    ("blob", "PUT", "/devstoreaccount1/cc1/" + "x" * 1100, b"x", {"x-ms-blob-type": "BlockBlob"}),
    ("table", "POST", "/devstoreaccount1/Tables", b"{not json", {}),
    ("table", "POST", "/devstoreaccount1/Tables", b'{"TableName": 5}', {}),
    ("table", "POST", "/devstoreaccount1/tt1", b"[]", {}),
    ("table", "GET", "/devstoreaccount1/tt1()?$filter=((", b"", {}),
    ("table", "GET", "/devstoreaccount1/tt1()?$top=5000", b"", {}),
    ("table", "GET", "/devstoreaccount1/tt1(PartitionKey='a')", b"", {}),
    ("table", "POST", "/devstoreaccount1/$batch", b"garbage", {"Content-Type": "multipart/mixed"}),
    ("table", "DELETE", "/devstoreaccount1/tt1(PartitionKey='a',RowKey='b')", b"", {}),
]


@pytest.mark.parametrize(("service", "method", "path", "body", "headers"), CASES)
def test_bad_requests_are_4xx_with_an_error_code(
    storage: Endpoints,
    service: str,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    port = {"blob": storage.blob, "queue": storage.queue, "table": storage.table}[service]
    _make_targets(storage)
    conn = http.client.HTTPConnection(storage.host, port, timeout=10)
    try:
        sep = "&" if "?" in path else "?"
        conn.request(method, f"{path}{sep}{_sas()}", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert 400 <= resp.status < 500 or resp.status == 501, resp.status  # 501: page blobs
        assert resp.status != 403, "the SAS should be accepted; the request itself is bad"
        assert resp.getheader("x-ms-error-code")
    finally:
        conn.close()


def test_raw_garbage_on_the_socket_gets_400_and_the_server_stays_up(storage: Endpoints) -> None:
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nno-colon\r\n\r\n"]:
        with socket.create_connection((storage.host, storage.queue), timeout=5) as sock:
            sock.sendall(junk)
            reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 4"), reply[:40]
    svc = QueueServiceClient.from_connection_string(storage.connection_string())
    list(svc.list_queues())


def test_oversized_body_is_413(storage: Endpoints) -> None:
    with socket.create_connection((storage.host, storage.blob), timeout=5) as sock:
        sock.sendall(
            b"PUT /devstoreaccount1/c/b HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"RequestBodyTooLarge" in reply


def test_accounts_file_adds_accounts_without_restart(storage_process: StorageProcess) -> None:
    accounts = storage_process.data_dir.parent / "accounts.json"
    storage_process.args = ("--accounts-file", str(accounts))
    ep = storage_process.start()
    key = base64.b64encode(os.urandom(64)).decode()
    tmp = accounts.with_suffix(".tmp")
    tmp.write_text(json.dumps({"svcguestbook": key}))
    os.replace(tmp, accounts)
    own = Endpoints(ep.host, ep.blob, ep.queue, ep.table, account="svcguestbook", key=key)
    svc = QueueServiceClient.from_connection_string(own.connection_string())
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            svc.create_queue("jobs")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    dev = QueueServiceClient.from_connection_string(ep.connection_string())
    assert [q.name for q in dev.list_queues()] == []  # accounts are separate namespaces
    assert [q.name for q in svc.list_queues()] == ["jobs"]


def test_cli_reports_a_busy_port_in_a_sentence(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cumulo.cli.main", "storage", "serve", "--data",
             str(tmp_path / "d"), "--blob-port", "0", "--queue-port", str(port),
             "--table-port", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 4
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_large_block_list_body_is_read_from_its_spool_file(storage: Endpoints) -> None:
    from azure.storage.blob import BlobServiceClient

    c = BlobServiceClient.from_connection_string(storage.connection_string()).get_container_client(
        "cc1"
    )
    _make_targets(storage)
    blob = c.get_blob_client("spooled-list")
    ids = [base64.b64encode(f"blk{i}".encode()).decode() for i in range(2)]
    for i, block_id in enumerate(ids):
        blob.stage_block(block_id, bytes([65 + i]) * 3)
    wire = [base64.b64encode(i.encode()).decode() for i in ids]  # the SDK encodes ids again
    padding = " " * (300 * 1024)
    body = f"<BlockList>{padding}<Latest>{wire[1]}</Latest><Latest>{wire[0]}</Latest></BlockList>"
    conn = http.client.HTTPConnection(storage.host, storage.blob, timeout=10)
    try:
        conn.request(
            "PUT", f"/devstoreaccount1/cc1/spooled-list?comp=blocklist&{_sas()}", body=body.encode()
        )
        resp = conn.getresponse()
        answer = resp.read()
        assert resp.status == 201, answer
    finally:
        conn.close()
    assert blob.download_blob().readall() == b"BBBAAA"


def test_interrupted_upload_leaves_no_file_and_no_blob(storage_process: StorageProcess) -> None:
    import time

    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    ep = storage_process.start()
    c = BlobServiceClient.from_connection_string(ep.connection_string()).create_container("cut")
    with socket.create_connection((ep.host, ep.blob), timeout=5) as sock:
        sock.sendall(
            f"PUT /devstoreaccount1/cut/half?{_sas()} HTTP/1.1\r\nHost: x\r\n"
            "x-ms-blob-type: BlockBlob\r\nContent-Length: 1048576\r\n\r\n".encode()
            + b"x" * 400_000
        )
    blobs = storage_process.data_dir / "blobs"
    deadline = time.monotonic() + 10
    while any(p.name.startswith(".incoming-") for p in blobs.iterdir()):
        assert time.monotonic() < deadline, "the partial spool file was not removed"
        time.sleep(0.05)
    with pytest.raises(ResourceNotFoundError):
        c.get_blob_client("half").get_blob_properties()


def test_use_development_storage_true_works_unchanged(tmp_path: Path) -> None:
    """The literal `UseDevelopmentStorage=true` (fixed ports 10000-10002) with all three SDKs."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    for port in (10000, 10001, 10002):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"port {port} is in use (another storage service is running)")
    server = StorageProcess(tmp_path / "dev")
    try:
        server.start(ports=(10000, 10001, 10002))
        cs = "UseDevelopmentStorage=true"
        queue = QueueServiceClient.from_connection_string(cs).create_queue("devq")
        queue.send_message("hello")
        assert queue.receive_message().content == "hello"
        container = BlobServiceClient.from_connection_string(cs).create_container("devc")
        container.upload_blob("b", b"blob")
        assert container.download_blob("b").readall() == b"blob"
        table = TableServiceClient.from_connection_string(cs).create_table("devt")
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
        assert table.get_entity("p", "r")["v"] == 1
    finally:
        server.stop()


def test_copy_from_another_account_needs_a_sas(storage_process: StorageProcess) -> None:
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    other_key = base64.b64encode(os.urandom(64)).decode()
    storage_process.args = ("--account", f"otheracct:{other_key}")
    ep = storage_process.start()
    other = Endpoints(ep.host, ep.blob, ep.queue, ep.table, account="otheracct", key=other_key)
    src = (
        BlobServiceClient.from_connection_string(other.connection_string())
        .create_container("src")
        .upload_blob("b", b"from the other account")
    )
    dest = (
        BlobServiceClient.from_connection_string(ep.connection_string())
        .create_container("dst")
        .get_blob_client("b")
    )
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as info:
        dest.start_copy_from_url(src.url)
    assert info.value.status_code == 403
    sas = generate_blob_sas(
        "otheracct", "src", "b", account_key=other_key,
        permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    dest.start_copy_from_url(f"{src.url}?{sas}")
    assert dest.download_blob().readall() == b"from the other account"
