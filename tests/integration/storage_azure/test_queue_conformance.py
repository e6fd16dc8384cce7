"""Queue conformance: the official azure-storage-queue SDK against the service under test."""

from __future__ import annotations

import http.client
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.queue import (
    AccountSasPermissions,
    QueueClient,
    QueueSasPermissions,
    QueueServiceClient,
    ResourceTypes,
    generate_account_sas,
    generate_queue_sas,
)

from .conftest import Endpoints


@pytest.fixture
def svc(storage: Endpoints) -> QueueServiceClient:
    return QueueServiceClient.from_connection_string(storage.connection_string())


@pytest.fixture
def queue(svc: QueueServiceClient, unique: str) -> QueueClient:
    q = svc.get_queue_client(unique)
    q.create_queue()
    return q


def test_create_is_idempotent_with_same_metadata_and_conflicts_otherwise(
    svc: QueueServiceClient, unique: str
) -> None:
    q = svc.get_queue_client(unique)
    q.create_queue(metadata={"role": "worker"})
    with pytest.raises(ResourceExistsError):  # 204: the SDK raises on its own
        q.create_queue(metadata={"role": "worker"})
    with pytest.raises(ResourceExistsError) as info:
        q.create_queue(metadata={"role": "other"})
    assert info.value.error_code == "QueueAlreadyExists"


def test_delete_missing_queue_is_queue_not_found(svc: QueueServiceClient, unique: str) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        svc.get_queue_client(unique + "x").delete_queue()
    assert info.value.error_code == "QueueNotFound"


@pytest.mark.parametrize("name", ["ab", "UPPER", "a--b", "-ab", "ab-", "a_b", "x" * 64])
def test_bad_queue_names_are_invalid_resource_name(svc: QueueServiceClient, name: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        svc.get_queue_client(name).create_queue()
    assert info.value.status_code == 400
    assert info.value.error_code in ("InvalidResourceName", "OutOfRangeInput")


def test_list_with_prefix_metadata_and_paging(svc: QueueServiceClient, unique: str) -> None:
    names = [f"{unique}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        svc.create_queue(name, metadata={"n": str(i)})
    listed = list(svc.list_queues(name_starts_with=unique + "-", include_metadata=True))
    assert [q.name for q in listed] == names
    assert [q.metadata for q in listed] == [{"n": str(i)} for i in range(5)]
    pages = svc.list_queues(name_starts_with=unique + "-", results_per_page=2).by_page()
    sizes = [len(list(page)) for page in pages]
    assert sizes == [2, 2, 1]


def test_metadata_and_approximate_count(queue: QueueClient) -> None:
    queue.set_queue_metadata({"owner": "web", "tier": "1"})
    for i in range(3):
        queue.send_message(f"m{i}")
    props = queue.get_queue_properties()
    assert props.metadata == {"owner": "web", "tier": "1"}
    assert props.approximate_message_count == 3


def test_send_receive_delete_round_trip_keeps_text_exactly(queue: QueueClient) -> None:
    text = "héllo <world> & 'quotes' \"dq\" \u2603 ]]>"
    sent = queue.send_message(text)
    assert sent.pop_receipt
    (msg,) = queue.receive_messages(messages_per_page=32)
    assert msg.content == text
    assert msg.id == sent.id
    assert msg.dequeue_count == 1
    queue.delete_message(msg)
    assert list(queue.peek_messages(max_messages=32)) == []


def test_received_message_is_invisible_until_timeout_then_redelivered(queue: QueueClient) -> None:
    queue.send_message("job")
    first = next(iter(queue.receive_messages(visibility_timeout=1)))
    assert list(queue.receive_messages()) == []
    assert list(queue.peek_messages()) == []
    deadline = time.monotonic() + 10
    again = []
    while not again and time.monotonic() < deadline:
        again = list(queue.receive_messages(visibility_timeout=30))
        if not again:
            time.sleep(0.2)
    assert len(again) == 1
    assert again[0].id == first.id
    assert again[0].dequeue_count == 2
    assert again[0].pop_receipt != first.pop_receipt
    with pytest.raises(HttpResponseError):  # the first receipt is stale now
        queue.delete_message(first)
    queue.delete_message(again[0])


@pytest.mark.azurite_differs("Azurite gives every message of a batch the same pop receipt")
def test_receive_up_to_32_with_distinct_fresh_pop_receipts(queue: QueueClient) -> None:
    for i in range(40):
        queue.send_message(str(i))
    page = next(queue.receive_messages(messages_per_page=32).by_page())
    batch = list(page)
    assert len(batch) == 32
    assert [m.content for m in batch] == [str(i) for i in range(32)]
    assert len({m.pop_receipt for m in batch}) == 32


def test_more_than_32_is_out_of_range(queue: QueueClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(queue.receive_messages(messages_per_page=33))
    assert info.value.status_code == 400
    assert info.value.error_code == "OutOfRangeQueryParameterValue"


def test_put_with_visibility_timeout_is_hidden_at_first(queue: QueueClient) -> None:
    queue.send_message("later", visibility_timeout=60)
    assert list(queue.peek_messages()) == []
    assert queue.get_queue_properties().approximate_message_count == 1


def test_peek_does_not_change_visibility_or_count(queue: QueueClient) -> None:
    queue.send_message("a")
    peeked = queue.peek_messages(max_messages=5)
    assert [m.content for m in peeked] == ["a"]
    assert peeked[0].pop_receipt is None
    assert peeked[0].dequeue_count == 0
    (msg,) = queue.receive_messages()
    assert msg.dequeue_count == 1


def test_update_changes_content_and_issues_new_receipt(queue: QueueClient) -> None:
    queue.send_message("v1")
    (msg,) = queue.receive_messages(visibility_timeout=30)
    updated = queue.update_message(msg, visibility_timeout=0, content="v2")
    assert updated.pop_receipt and updated.pop_receipt != msg.pop_receipt
    (again,) = queue.peek_messages()
    assert again.content == "v2"
    with pytest.raises(HttpResponseError) as info:
        queue.delete_message(msg.id, msg.pop_receipt)
    assert info.value.error_code == "PopReceiptMismatch"
    queue.delete_message(msg.id, updated.pop_receipt)


def test_delete_unknown_message_is_message_not_found(queue: QueueClient) -> None:
    sent = queue.send_message("x")
    queue.delete_message(sent.id, sent.pop_receipt)
    with pytest.raises(ResourceNotFoundError) as info:
        queue.delete_message(sent.id, sent.pop_receipt)
    assert info.value.error_code == "MessageNotFound"


def test_clear_empties_the_queue(queue: QueueClient) -> None:
    for i in range(5):
        queue.send_message(str(i))
    queue.clear_messages()
    assert queue.get_queue_properties().approximate_message_count == 0


def test_ttl_minus_one_never_expires(queue: QueueClient) -> None:
    sent = queue.send_message("forever", time_to_live=-1)
    assert sent.expires_on.year == 9999


def test_message_expires_after_its_ttl(queue: QueueClient) -> None:
    queue.send_message("short", time_to_live=1)
    deadline = time.monotonic() + 10
    while queue.peek_messages() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(queue.peek_messages()) == []


def test_64_kib_message_fits_and_one_byte_more_is_refused(queue: QueueClient) -> None:
    queue.send_message("a" * 65536)
    (msg,) = queue.receive_messages()
    assert len(msg.content) == 65536
    with pytest.raises(HttpResponseError) as info:
        queue.send_message("a" * 65537)
    assert info.value.status_code in (400, 413)


def test_operations_on_missing_queue_are_queue_not_found(svc: QueueServiceClient) -> None:
    q = svc.get_queue_client("nosuchqueue1")
    with pytest.raises(ResourceNotFoundError) as info:
        q.send_message("x")
    assert info.value.error_code == "QueueNotFound"


def test_access_policy_round_trip(queue: QueueClient) -> None:
    from azure.storage.queue import AccessPolicy

    policy = AccessPolicy(
        permission=QueueSasPermissions(read=True),
        expiry=datetime(2030, 1, 1, tzinfo=UTC),
        start=datetime(2020, 1, 1, tzinfo=UTC),
    )
    queue.set_queue_access_policy(signed_identifiers={"readers": policy})
    got = queue.get_queue_access_policy()
    assert set(got) == {"readers"}
    assert got["readers"].permission == "r"


# -- authentication ----------------------------------------------------------------------------


def test_wrong_key_is_authentication_failed(storage: Endpoints, unique: str) -> None:
    bad = "A" * 86 + "=="
    svc = QueueServiceClient.from_connection_string(storage.connection_string(key=bad))
    with pytest.raises(ClientAuthenticationError) as info:
        svc.get_queue_client(unique).create_queue()
    assert info.value.error_code == "AuthenticationFailed"


def _sas_client(storage: Endpoints, name: str, sas: str) -> QueueClient:
    return QueueClient(storage.url("queue"), name, credential=sas)


def test_account_sas_allows_what_it_grants_only(storage: Endpoints, queue: QueueClient) -> None:
    sas = generate_account_sas(
        storage.account,
        storage.key,
        resource_types=ResourceTypes(object=True),
        permission=AccountSasPermissions(add=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    client = _sas_client(storage, queue.queue_name, sas)
    client.send_message("via sas")
    with pytest.raises(HttpResponseError) as info:
        list(client.receive_messages())
    assert info.value.status_code == 403
    assert info.value.error_code == "AuthorizationPermissionMismatch"


def test_expired_sas_is_refused(storage: Endpoints, queue: QueueClient) -> None:
    sas = generate_queue_sas(
        storage.account,
        queue.queue_name,
        storage.key,
        permission=QueueSasPermissions(add=True, read=True, process=True),
        expiry=datetime.now(UTC) - timedelta(minutes=5),
    )
    client = _sas_client(storage, queue.queue_name, sas)
    with pytest.raises(ClientAuthenticationError) as info:
        client.send_message("late")
    assert info.value.status_code == 403


def test_queue_sas_grants_its_permissions_on_its_queue(
    storage: Endpoints, queue: QueueClient
) -> None:
    sas = generate_queue_sas(
        storage.account,
        queue.queue_name,
        storage.key,
        permission=QueueSasPermissions(add=True, process=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    client = _sas_client(storage, queue.queue_name, sas)
    client.send_message("one")
    (msg,) = client.receive_messages()
    client.delete_message(msg)
    with pytest.raises(HttpResponseError) as info:
        client.peek_messages()  # needs read
    assert info.value.status_code == 403


# -- malformed input (raw HTTP with an account SAS) -----------------------------------------


def _raw(
    storage: Endpoints, method: str, path: str, body: bytes, query: str = ""
) -> tuple[int, str, bytes]:
    sas = generate_account_sas(
        storage.account,
        storage.key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True,
            write=True,
            add=True,
            process=True,
            list=True,
            create=True,
            update=True,
            delete=True,
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    conn = http.client.HTTPConnection(storage.host, storage.queue, timeout=10)
    try:
        sep = "&" if query else ""
        conn.request(method, f"/{storage.account}/{path}?{query}{sep}{sas}", body=body)
        resp = conn.getresponse()
        body = resp.read()
        code = resp.getheader("x-ms-error-code") or ""
        if not code and b"<Code>" in body:  # Azurite puts it only in the body
            code = body.split(b"<Code>")[1].split(b"</Code>")[0].decode()
        return resp.status, code, body
    finally:
        conn.close()


_BARE_400 = pytest.mark.azurite_differs("answers a bare 400 without an error code")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<QueueMessage><MessageText>unclosed", marks=_BARE_400),
        pytest.param(b"not xml at all", marks=_BARE_400),
        b"<Other/>",
        pytest.param(
            b"<!DOCTYPE x [<!ENTITY a 'b'>]>"
            b"<QueueMessage><MessageText>&a;</MessageText></QueueMessage>",
            marks=_BARE_400,
        ),
    ],
)
def test_malformed_message_bodies_get_invalid_xml(
    storage: Endpoints, queue: QueueClient, body: bytes
) -> None:
    status, code, _ = _raw(storage, "POST", f"{queue.queue_name}/messages", body)
    assert status == 400
    assert code in ("InvalidXmlDocument", "InvalidXmlNodeValue", "InvalidInput")
    assert queue.get_queue_properties().approximate_message_count == 0


@pytest.mark.parametrize(
    ("query", "code"),
    [
        pytest.param("numofmessages=0", "OutOfRangeQueryParameterValue", marks=_BARE_400),
        pytest.param("numofmessages=abc", "InvalidQueryParameterValue", marks=_BARE_400),
        ("visibilitytimeout=0", "OutOfRangeQueryParameterValue"),
        ("visibilitytimeout=604801", "OutOfRangeQueryParameterValue"),
    ],
)
def test_bad_receive_parameters_are_refused(
    storage: Endpoints, queue: QueueClient, query: str, code: str
) -> None:
    status, got, _ = _raw(storage, "GET", f"{queue.queue_name}/messages", b"", query)
    assert status == 400
    assert got == code


def test_sas_with_a_stored_access_policy(storage: Endpoints, queue: QueueClient) -> None:
    from azure.storage.queue import AccessPolicy

    now = datetime.now(UTC)
    queue.set_queue_access_policy(
        signed_identifiers={
            "adders": AccessPolicy(
                permission=QueueSasPermissions(add=True),
                expiry=now + timedelta(hours=1),
                start=now - timedelta(hours=1),
            )
        }
    )
    sas = generate_queue_sas(storage.account, queue.queue_name, storage.key, policy_id="adders")
    client = _sas_client(storage, queue.queue_name, sas)
    client.send_message("by policy")
    with pytest.raises(HttpResponseError) as info:
        list(client.receive_messages())
    assert info.value.status_code == 403
    unknown = generate_queue_sas(storage.account, queue.queue_name, storage.key, policy_id="nope")
    with pytest.raises(HttpResponseError) as info2:
        _sas_client(storage, queue.queue_name, unknown).send_message("x")
    assert info2.value.status_code == 403


def test_concurrent_producers_and_consumers_lose_and_duplicate_nothing(
    svc: QueueServiceClient, unique: str
) -> None:
    import threading

    name = unique + "-cc"
    svc.create_queue(name)
    sent: list[str] = []
    received: list[str] = []
    lock = threading.Lock()
    done_producing = threading.Event()

    def produce(worker: int) -> None:
        q = svc.get_queue_client(name)
        for i in range(50):
            text = f"{worker}-{i}"
            q.send_message(text)
            with lock:
                sent.append(text)

    def consume() -> None:
        q = svc.get_queue_client(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = list(q.receive_messages(messages_per_page=16, visibility_timeout=60))
            for m in batch:
                q.delete_message(m)
                with lock:
                    received.append(m.content)
            if not batch and done_producing.is_set():
                return

    producers = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    done_producing.set()
    for t in consumers:
        t.join()
    assert sorted(received) == sorted(sent)
    assert len(received) == 200
