"""kill -9 right after acknowledged writes loses nothing (the process is restarted on its data)."""

from __future__ import annotations

import pytest
from azure.storage.queue import QueueServiceClient

from .conftest import StorageProcess

pytestmark = pytest.mark.cumulo_only


def test_acknowledged_queue_writes_survive_kill_9(storage_process: StorageProcess) -> None:
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
