"""Blob conformance: the official azure-storage-blob SDK against the service under test."""

from __future__ import annotations

import http.client
import os
from datetime import UTC, datetime, timedelta

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    AccountSasPermissions,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    BlobType,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

from .conftest import Endpoints


@pytest.fixture
def svc(storage: Endpoints) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage.connection_string())


@pytest.fixture
def container(svc: BlobServiceClient, unique: str) -> ContainerClient:
    c = svc.get_container_client(unique)
    c.create_container()
    return c


def test_container_create_conflict_properties_metadata_delete(
    svc: BlobServiceClient, unique: str
) -> None:
    c = svc.get_container_client(unique)
    c.create_container(metadata={"owner": "web"})
    with pytest.raises(ResourceExistsError) as info:
        c.create_container()
    assert info.value.error_code == "ContainerAlreadyExists"
    props = c.get_container_properties()
    assert props.metadata == {"owner": "web"}
    c.set_container_metadata({"owner": "worker", "x": "1"})
    assert c.get_container_properties().metadata == {"owner": "worker", "x": "1"}
    c.delete_container()
    with pytest.raises(ResourceNotFoundError) as info2:
        c.get_container_properties()
    assert info2.value.error_code == "ContainerNotFound"


def test_list_containers_with_prefix_and_paging(svc: BlobServiceClient, unique: str) -> None:
    names = [f"{unique}-{i}" for i in range(5)]
    for name in names:
        svc.create_container(name, metadata={"n": name[-1]})
    listed = list(svc.list_containers(name_starts_with=unique + "-", include_metadata=True))
    assert [c.name for c in listed] == names
    assert listed[2].metadata == {"n": "2"}
    pages = svc.list_containers(name_starts_with=unique + "-", results_per_page=2).by_page()
    assert [len(list(p)) for p in pages] == [2, 2, 1]


@pytest.mark.parametrize("name", ["ab", "Upper", "a--b", "-abc", "a_b"])
def test_bad_container_names_are_refused(svc: BlobServiceClient, name: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        svc.get_container_client(name).create_container()
    assert info.value.status_code == 400


def test_upload_download_properties_metadata(container: ContainerClient) -> None:
    blob = container.get_blob_client("dir/hello.txt")
    blob.upload_blob(
        b"hello world",
        content_settings=ContentSettings(content_type="text/plain", content_language="en"),
        metadata={"k": "v"},
    )
    assert blob.download_blob().readall() == b"hello world"
    props = blob.get_blob_properties()
    assert props.size == 11
    assert props.blob_type == BlobType.BLOCKBLOB
    assert props.content_settings.content_type == "text/plain"
    assert props.content_settings.content_language == "en"
    assert props.content_settings.content_md5 is not None
    assert props.metadata == {"k": "v"}
    blob.set_blob_metadata({"a": "1"})
    blob.set_http_headers(ContentSettings(content_type="application/json"))
    props = blob.get_blob_properties()
    assert props.metadata == {"a": "1"}
    assert props.content_settings.content_type == "application/json"


def test_ranges(container: ContainerClient) -> None:
    data = bytes(range(256)) * 40
    blob = container.upload_blob("r", data)
    assert blob.download_blob(offset=10, length=20).readall() == data[10:30]
    assert blob.download_blob(offset=len(data) - 5).readall() == data[-5:]
    with pytest.raises(HttpResponseError) as info:
        blob.download_blob(offset=len(data) + 10, length=5).readall()
    assert info.value.status_code == 416


def test_empty_blob_downloads_empty(container: ContainerClient) -> None:
    blob = container.upload_blob("empty", b"")
    assert blob.download_blob().readall() == b""
    assert blob.get_blob_properties().size == 0


def test_overwrite_false_is_blob_already_exists(container: ContainerClient) -> None:
    container.upload_blob("x", b"1")
    with pytest.raises(ResourceExistsError):
        container.upload_blob("x", b"2")
    container.upload_blob("x", b"3", overwrite=True)
    assert container.download_blob("x").readall() == b"3"


def test_etag_conditions(container: ContainerClient) -> None:
    blob = container.upload_blob("e", b"v1")
    etag = blob.get_blob_properties().etag
    blob.upload_blob(
        b"v2", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
    )
    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(
            b"v3", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    new_etag = blob.get_blob_properties().etag
    assert new_etag != etag
    with pytest.raises(ResourceModifiedError):
        blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
    # If-None-Match on read: unchanged -> 304, which the SDK raises as not-modified.
    with pytest.raises(HttpResponseError) as info:
        blob.download_blob(etag=new_etag, match_condition=MatchConditions.IfModified).readall()
    assert info.value.status_code == 304
    assert (
        blob.download_blob(etag=etag, match_condition=MatchConditions.IfModified).readall() == b"v2"
    )
    blob.delete_blob(etag=new_etag, match_condition=MatchConditions.IfNotModified)


def test_blocks_staged_listed_committed(container: ContainerClient) -> None:
    blob = container.get_blob_client("blocks")
    ids = [f"{i:06d}".encode().hex() for i in range(3)]
    import base64

    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(3)]
    for i, block_id in enumerate(ids):
        blob.stage_block(block_id, bytes([65 + i]) * (i + 1))
    committed, uncommitted = blob.get_block_list("all")
    assert committed == []
    assert sorted(b.id for b in uncommitted) == sorted(ids)
    blob.commit_block_list([ids[2], ids[0]])
    assert blob.download_blob().readall() == b"CCCA"
    committed, uncommitted = blob.get_block_list("all")
    assert [b.id for b in committed] == [ids[2], ids[0]]
    assert [b.size for b in committed] == [3, 1]
    assert uncommitted == []  # uncommitted blocks are discarded by a commit
    # Re-commit using a committed block plus a new one.
    new = base64.b64encode(b"block-9999").decode()
    blob.stage_block(new, b"ZZ")
    from azure.storage.blob import BlobBlock

    blob.commit_block_list([BlobBlock(ids[0]), BlobBlock(new)])
    assert blob.download_blob().readall() == b"AZZ"


def test_commit_of_unknown_block_is_invalid_block_list(container: ContainerClient) -> None:
    import base64

    blob = container.get_blob_client("bad-commit")
    with pytest.raises(HttpResponseError) as info:
        blob.commit_block_list([base64.b64encode(b"nope").decode()])
    assert info.value.error_code == "InvalidBlockList"


def test_chunked_upload_and_download_of_a_large_blob(
    storage: Endpoints, container: ContainerClient
) -> None:
    mib = 1024 * 1024
    svc = BlobServiceClient.from_connection_string(
        storage.connection_string(),
        max_single_put_size=mib,
        max_block_size=mib,
        max_single_get_size=mib,
        max_chunk_get_size=mib,
    )
    blob = svc.get_blob_client(container.container_name, "large")
    data = os.urandom(5 * mib + 123)
    blob.upload_blob(data, max_concurrency=2)
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == 6  # uploaded as blocks, committed as a list
    assert blob.download_blob(max_concurrency=2).readall() == data


def test_list_with_prefix_delimiter_and_paging(container: ContainerClient) -> None:
    for name in ["a/1", "a/2", "a/b/3", "b/1", "c", "d"]:
        container.upload_blob(name, b"x", metadata={"n": name.replace("/", "_")})
    flat = [b.name for b in container.list_blobs()]
    assert flat == ["a/1", "a/2", "a/b/3", "b/1", "c", "d"]
    assert [b.name for b in container.list_blobs(name_starts_with="a/")] == ["a/1", "a/2", "a/b/3"]
    top = sorted(b.name for b in container.walk_blobs(delimiter="/"))
    assert top == ["a/", "b/", "c", "d"]
    inner = sorted(b.name for b in container.walk_blobs(name_starts_with="a/", delimiter="/"))
    assert inner == ["a/1", "a/2", "a/b/"]
    pages = container.list_blobs(results_per_page=4).by_page()
    assert [len(list(p)) for p in pages] == [4, 2]
    with_meta = list(container.list_blobs(name_starts_with="c", include=["metadata"]))
    assert with_meta[0].metadata == {"n": "c"}


def test_delete_blob_and_missing_blob(container: ContainerClient) -> None:
    blob = container.upload_blob("gone", b"x")
    blob.delete_blob()
    with pytest.raises(ResourceNotFoundError) as info:
        blob.download_blob()
    assert info.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError):
        blob.delete_blob()


def test_append_blob(container: ContainerClient) -> None:
    blob = container.get_blob_client("log")
    blob.create_append_blob()
    blob.append_block(b"one,")
    result = blob.append_block(b"two")
    assert result["blob_append_offset"] == "4"
    assert result["blob_committed_block_count"] == 2
    assert blob.download_blob().readall() == b"one,two"
    assert blob.get_blob_properties().blob_type == BlobType.APPENDBLOB


def test_delete_container_removes_its_blobs(svc: BlobServiceClient, unique: str) -> None:
    c = svc.get_container_client(unique)
    c.create_container()
    c.upload_blob("x", b"123")
    c.delete_container()
    c.create_container()
    assert list(c.list_blobs()) == []


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.azurite_differs("answers 403 AuthorizationFailure, not AuthenticationFailed")
def test_wrong_key_is_refused(storage: Endpoints, unique: str) -> None:
    svc = BlobServiceClient.from_connection_string(storage.connection_string(key="A" * 86 + "=="))
    with pytest.raises(ClientAuthenticationError) as info:
        svc.get_container_client(unique).create_container()
    assert info.value.error_code == "AuthenticationFailed"


def test_blob_sas_read_only(storage: Endpoints, container: ContainerClient) -> None:
    container.upload_blob("s", b"secret")
    sas = generate_blob_sas(
        storage.account,
        container.container_name,
        "s",
        account_key=storage.key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    url = f"{storage.url('blob')}/{container.container_name}/s"
    reader = BlobClient.from_blob_url(url, credential=sas)
    assert reader.download_blob().readall() == b"secret"
    with pytest.raises(HttpResponseError) as info:
        reader.upload_blob(b"overwrite", overwrite=True)
    assert info.value.status_code == 403


def test_container_sas_lists_and_writes(storage: Endpoints, container: ContainerClient) -> None:
    sas = generate_container_sas(
        storage.account,
        container.container_name,
        account_key=storage.key,
        permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    client = ContainerClient(storage.url("blob"), container.container_name, credential=sas)
    client.upload_blob("via-sas", b"1")
    assert [b.name for b in client.list_blobs()] == ["via-sas"]
    with pytest.raises(HttpResponseError) as info:
        client.delete_blob("via-sas")
    assert info.value.status_code == 403


@pytest.mark.azurite_differs("answers 403 AuthorizationFailure, not AuthenticationFailed")
def test_expired_account_sas_is_refused(storage: Endpoints, container: ContainerClient) -> None:
    sas = generate_account_sas(
        storage.account,
        storage.key,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) - timedelta(minutes=1),
    )
    client = ContainerClient(storage.url("blob"), container.container_name, credential=sas)
    with pytest.raises(ClientAuthenticationError):
        list(client.list_blobs())


def test_public_container_allows_anonymous_read(
    svc: BlobServiceClient, storage: Endpoints, unique: str
) -> None:
    c = svc.get_container_client(unique)
    c.create_container(public_access="blob")
    c.upload_blob("pub", b"open")
    anon = BlobClient(storage.url("blob"), unique, "pub")
    assert anon.download_blob().readall() == b"open"


# -- malformed input ----------------------------------------------------------------------------


def _raw(
    storage: Endpoints, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    sas = generate_account_sas(
        storage.account,
        storage.key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, list=True, create=True, delete=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    conn = http.client.HTTPConnection(storage.host, storage.blob, timeout=10)
    try:
        sep = "&" if "?" in path else "?"
        conn.request(method, f"/{storage.account}/{path}{sep}{sas}", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        code = resp.getheader("x-ms-error-code") or ""
        if not code and b"<Code>" in data:
            code = data.split(b"<Code>")[1].split(b"</Code>")[0].decode()
        return resp.status, code
    finally:
        conn.close()


@pytest.mark.azurite_differs("does not validate these inputs the same way")
def test_malformed_block_list_and_ranges(storage: Endpoints, container: ContainerClient) -> None:
    name = container.container_name
    status, code = _raw(storage, "PUT", f"{name}/b?comp=blocklist", b"<BlockList><Latest>", {})
    assert (status, code) == (400, "InvalidXmlDocument")
    container.upload_blob("b", b"0123456789")
    status, code = _raw(storage, "GET", f"{name}/b", b"", {"x-ms-range": "bytes=5-2"})
    assert status == 400
    status, code = _raw(storage, "GET", f"{name}/b", b"", {"x-ms-range": "bytes=50-60"})
    assert (status, code) == (416, "InvalidRange")
    status, code = _raw(storage, "PUT", f"{name}/nb", b"x", {})  # no x-ms-blob-type
    assert status == 400
    status, code = _raw(
        storage,
        "PUT",
        f"{name}/md5",
        b"x",
        {"x-ms-blob-type": "BlockBlob", "Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="},
    )
    assert (status, code) == (400, "Md5Mismatch")
    status, code = _raw(storage, "PUT", f"{name}/blk?comp=block&blockid=%21%21", b"x", {})
    assert status == 400


def test_blob_sas_with_a_stored_access_policy(
    storage: Endpoints, container: ContainerClient
) -> None:
    from azure.storage.blob import AccessPolicy

    container.upload_blob("p", b"policy")
    container.set_container_access_policy(
        signed_identifiers={
            "readers": AccessPolicy(
                permission=ContainerSasPermissions(read=True),
                expiry=datetime.now(UTC) + timedelta(hours=1),
            )
        }
    )
    sas = generate_blob_sas(
        storage.account, container.container_name, "p", account_key=storage.key, policy_id="readers"
    )
    url = f"{storage.url('blob')}/{container.container_name}/p"
    assert BlobClient.from_blob_url(url, credential=sas).download_blob().readall() == b"policy"
    with pytest.raises(HttpResponseError) as info:
        BlobClient.from_blob_url(url, credential=sas).upload_blob(b"x", overwrite=True)
    assert info.value.status_code == 403


def test_blob_lease_for_leader_election(container: ContainerClient) -> None:
    from azure.storage.blob import BlobLeaseClient

    blob = container.upload_blob("leader", b"")
    first = BlobLeaseClient(blob)
    first.acquire(lease_duration=15)
    props = blob.get_blob_properties()
    assert props.lease.status == "locked"
    assert props.lease.state == "leased"
    assert props.lease.duration == "fixed"
    second = BlobLeaseClient(blob)
    with pytest.raises(HttpResponseError) as info:
        second.acquire(lease_duration=15)
    assert info.value.status_code == 409
    assert info.value.error_code == "LeaseAlreadyPresent"
    with pytest.raises(HttpResponseError) as info2:
        blob.upload_blob(b"no lease id", overwrite=True)
    assert info2.value.status_code == 412
    blob.upload_blob(b"with the lease", overwrite=True, lease=first)
    first.renew()
    assert [b.lease.state for b in container.list_blobs(name_starts_with="leader")] == ["leased"]
    first.release()
    second.acquire(lease_duration=-1)
    second.break_lease(lease_break_period=0)
    assert blob.get_blob_properties().lease.state == "broken"
    blob.delete_blob()


@pytest.mark.parametrize(
    "name", ["a b+c.txt", "ünïcödé/файл", "100%/x", "q?x#y", "dir//double", "(paren)'quote'"]
)
def test_blob_names_with_special_characters(container: ContainerClient, name: str) -> None:
    container.upload_blob(name, name.encode())
    assert container.download_blob(name).readall() == name.encode()
    assert [b.name for b in container.list_blobs()] == [name]


def test_copy_blob_within_the_account(container: ContainerClient) -> None:
    source = container.upload_blob("src", b"copy me", metadata={"m": "1"})
    dest = container.get_blob_client("dst")
    result = dest.start_copy_from_url(source.url)
    assert result["copy_status"] == "success"
    assert dest.download_blob().readall() == b"copy me"
    props = dest.get_blob_properties()
    assert props.copy.status == "success"
    assert props.metadata == {"m": "1"}
    source.delete_blob()  # the copy does not share the source's content
    assert dest.download_blob().readall() == b"copy me"
    with pytest.raises(HttpResponseError) as info:
        dest.start_copy_from_url(source.url)
    assert info.value.status_code == 404
