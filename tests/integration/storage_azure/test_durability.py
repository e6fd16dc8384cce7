"""kill -9 right after acknowledged writes loses nothing (the process is restarted on its data)."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from .conftest import StorageProcess

pytestmark = pytest.mark.cumulo_only


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_acknowledged_queue_writes_survive_kill_9(
    storage_process: StorageProcess, durability: str
) -> None:
    storage_process.args = ("--durability", durability)
    ep = storage_process.start()
    svc = QueueServiceClient.from_connection_string(ep.connection_string())
    q = svc.create_queue("durable")
    sent = [q.send_message(f"m{i}").id for i in range(200)]
    received = q.receive_message(visibility_timeout=3600)
    assert received is not None
    q.delete_message(received)
    storage_process.kill9()

    ep = storage_process.start()
    svc = QueueServiceClient.from_connection_string(ep.connection_string())
    q = svc.get_queue_client("durable")
    assert q.get_queue_properties().approximate_message_count == 199
    left = set()
    while batch := list(q.receive_messages(messages_per_page=32, visibility_timeout=3600)):
        left.update(m.id for m in batch)
    assert left == set(sent) - {received.id}


def test_acknowledged_blob_uploads_survive_kill_9(storage_process: StorageProcess) -> None:
    import os

    ep = storage_process.start()
    mib = 1024 * 1024
    svc = BlobServiceClient.from_connection_string(
        ep.connection_string(), max_single_put_size=mib, max_block_size=mib
    )
    c = svc.create_container("durable")
    small = {f"s{i}": os.urandom(1000 + i) for i in range(20)}
    for name, data in small.items():
        c.upload_blob(name, data)
    big = os.urandom(3 * mib + 7)
    c.upload_blob("big", big)  # Put Block x4 + Put Block List
    storage_process.kill9()

    ep = storage_process.start()
    c = BlobServiceClient.from_connection_string(ep.connection_string()).get_container_client(
        "durable"
    )
    for name, data in small.items():
        assert c.download_blob(name).readall() == data
    assert c.download_blob("big").readall() == big


def test_orphan_files_of_an_uncommitted_upload_are_swept(storage_process: StorageProcess) -> None:
    ep = storage_process.start()
    svc = BlobServiceClient.from_connection_string(ep.connection_string())
    c = svc.create_container("sweep")
    blob = c.get_blob_client("b")
    blob.stage_block("YmxvY2sx", b"x" * 1000)
    c.upload_blob("kept", b"k" * 10)
    c.upload_blob("kept", b"k2" * 10, overwrite=True)
    storage_process.kill9()
    files = [p for p in (storage_process.data_dir / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 2  # the staged block and the current version of "kept"
    (storage_process.data_dir / "blobs" / "zz").mkdir(exist_ok=True)
    (storage_process.data_dir / "blobs" / "zz" / "zzorphan").write_bytes(b"leftover")
    storage_process.start()
    files = [p.name for p in (storage_process.data_dir / "blobs").rglob("*") if p.is_file()]
    assert "zzorphan" not in files
    assert len(files) == 2


def test_acknowledged_entity_inserts_survive_kill_9(storage_process: StorageProcess) -> None:
    ep = storage_process.start()
    svc = TableServiceClient.from_connection_string(ep.connection_string())
    table = svc.create_table("durable")
    for i in range(100):
        table.create_entity({"PartitionKey": "p", "RowKey": f"{i:03d}", "n": i})
    table.submit_transaction(
        [("create", {"PartitionKey": "q", "RowKey": str(i), "n": i}) for i in range(50)]
    )
    storage_process.kill9()

    ep = storage_process.start()
    table = TableServiceClient.from_connection_string(ep.connection_string()).get_table_client(
        "durable"
    )
    assert sorted(e["n"] for e in table.query_entities("PartitionKey eq 'p'")) == list(range(100))
    assert len(list(table.query_entities("PartitionKey eq 'q'"))) == 50
