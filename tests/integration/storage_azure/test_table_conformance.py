"""Table conformance: the official azure-data-tables SDK against the service under test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.core import MatchConditions
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableSasPermissions,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
    generate_table_sas,
)

from .conftest import Endpoints


@pytest.fixture
def svc(storage: Endpoints) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage.connection_string())


@pytest.fixture
def table(svc: TableServiceClient, unique: str) -> TableClient:
    return svc.create_table(unique)


def test_tables_create_conflict_list_query_delete(svc: TableServiceClient, unique: str) -> None:
    names = [f"{unique}x{i}" for i in range(3)]
    for name in names:
        svc.create_table(name)
    with pytest.raises(ResourceExistsError) as info:
        svc.create_table(names[0])
    assert info.value.error_code == "TableAlreadyExists"
    listed = {t.name for t in svc.list_tables()}
    assert set(names) <= listed
    found = [t.name for t in svc.query_tables(f"TableName eq '{names[1]}'")]
    assert found == [names[1]]
    svc.delete_table(names[0])
    assert names[0] not in {t.name for t in svc.list_tables()}


@pytest.mark.parametrize("name", ["ab", "1abc", "has-dash", "tables"])
def test_bad_table_names_are_refused(svc: TableServiceClient, name: str) -> None:
    with pytest.raises((HttpResponseError, ValueError)):
        svc.create_table(name)


def test_entity_types_round_trip(table: TableClient) -> None:
    guid = uuid.uuid4()
    when = datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    entity = {
        "PartitionKey": "p",
        "RowKey": "r",
        "Text": "héllo 'quoted'",
        "Int": 42,
        "Neg": -7,
        "Long": EntityProperty(2**40, EdmType.INT64),
        "Double": 2.5,
        "Bool": True,
        "When": when,
        "Guid": guid,
        "Bytes": b"\x00\x01\xff",
    }
    table.create_entity(entity)
    got = table.get_entity("p", "r")
    assert got["Text"] == "héllo 'quoted'"
    assert got["Int"] == 42
    assert got["Neg"] == -7
    assert got["Long"].value == 2**40
    assert got["Double"] == 2.5
    assert got["Bool"] is True
    assert got["When"] == when
    assert got["Guid"] == guid
    assert got["Bytes"] == b"\x00\x01\xff"
    assert got.metadata["etag"]
    assert got.metadata["timestamp"] is not None


def test_insert_twice_is_entity_already_exists(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    with pytest.raises(ResourceExistsError) as info:
        table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    assert "EntityAlreadyExists" in str(info.value)


def test_update_replace_merge_upsert(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "a": 1, "b": 2})
    table.update_entity({"PartitionKey": "p", "RowKey": "r", "a": 10}, mode=UpdateMode.MERGE)
    assert dict(table.get_entity("p", "r")) == {"PartitionKey": "p", "RowKey": "r", "a": 10, "b": 2}
    table.update_entity({"PartitionKey": "p", "RowKey": "r", "c": 3}, mode=UpdateMode.REPLACE)
    assert dict(table.get_entity("p", "r")) == {"PartitionKey": "p", "RowKey": "r", "c": 3}
    table.upsert_entity({"PartitionKey": "p", "RowKey": "new", "x": 1}, mode=UpdateMode.MERGE)
    table.upsert_entity({"PartitionKey": "p", "RowKey": "new", "y": 2}, mode=UpdateMode.MERGE)
    assert dict(table.get_entity("p", "new")) == {
        "PartitionKey": "p",
        "RowKey": "new",
        "x": 1,
        "y": 2,
    }
    with pytest.raises(ResourceNotFoundError):
        table.update_entity({"PartitionKey": "p", "RowKey": "missing", "a": 1})


def test_etag_conditions_on_update_and_delete(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    first = table.get_entity("p", "r")
    table.update_entity(
        {"PartitionKey": "p", "RowKey": "r", "v": 2},
        etag=first.metadata["etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceModifiedError):
        table.update_entity(
            {"PartitionKey": "p", "RowKey": "r", "v": 3},
            etag=first.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    with pytest.raises(ResourceModifiedError):
        table.delete_entity(
            "p", "r", etag=first.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    current = table.get_entity("p", "r")
    assert current["v"] == 2
    table.delete_entity(
        "p", "r", etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
    )
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("p", "r")


@pytest.fixture
def filled(table: TableClient) -> TableClient:
    for i in range(30):
        table.create_entity(
            {
                "PartitionKey": f"p{i % 3}",
                "RowKey": f"{i:03d}",
                "n": i,
                "big": EntityProperty(i * 2**33, EdmType.INT64),
                "f": i / 4,
                "s": "even" if i % 2 == 0 else "odd",
                "flag": i % 5 == 0,
                "when": datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=i),
            }
        )
    return table


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("PartitionKey eq 'p1'", [i for i in range(30) if i % 3 == 1]),
        (
            "PartitionKey eq 'p1' and RowKey ge '010'",
            [i for i in range(30) if i % 3 == 1 and i >= 10],
        ),
        ("n lt 3 or n gt 27", [0, 1, 2, 28, 29]),
        ("not (n ge 2) and s eq 'even'", [0]),
        ("n ne 0 and f le 1.0", [1, 2, 3, 4]),
        ("big gt 240518168576L", [i for i in range(30) if i * 2**33 > 240518168576]),
        ("flag eq true and n gt 0", [5, 10, 15, 20, 25]),
        ("when ge datetime'2020-01-28T00:00:00Z'", [27, 28, 29]),
        ("s eq 'odd' and (n lt 5 or n gt 26)", [1, 3, 27, 29]),
        ("missing eq 1", []),
    ],
)
def test_odata_filters(filled: TableClient, query: str, expected: list[int]) -> None:
    got = sorted(e["n"] for e in filled.query_entities(query))
    assert got == expected


def test_query_parameters_select_top_and_continuation(filled: TableClient) -> None:
    got = list(filled.query_entities("n ge @low", parameters={"low": 25}, select=["n"]))
    assert sorted(e["n"] for e in got) == [25, 26, 27, 28, 29]
    assert all(set(e.keys()) == {"n"} for e in got)
    pages = filled.list_entities(results_per_page=7).by_page()
    sizes = [len(list(p)) for p in pages]
    assert sizes == [7, 7, 7, 7, 2]
    everything = [
        (e["PartitionKey"], e["RowKey"]) for e in filled.list_entities(results_per_page=4)
    ]
    assert everything == sorted(everything)
    assert len(everything) == 30


def test_bad_filter_is_a_400(filled: TableClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(filled.query_entities("n eq eq 3"))
    assert info.value.status_code == 400


def test_transaction_commits_all(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "b", "RowKey": "old", "v": 1})
    table.create_entity({"PartitionKey": "b", "RowKey": "gone", "v": 1})
    result = table.submit_transaction(
        [
            ("create", {"PartitionKey": "b", "RowKey": "1", "v": 1}),
            ("upsert", {"PartitionKey": "b", "RowKey": "2", "v": 2}),
            ("update", {"PartitionKey": "b", "RowKey": "old", "v": 9}, {"mode": "merge"}),
            ("delete", {"PartitionKey": "b", "RowKey": "gone"}),
        ]
    )
    assert len(result) == 4
    rows = {e["RowKey"]: e["v"] for e in table.query_entities("PartitionKey eq 'b'")}
    assert rows == {"1": 1, "2": 2, "old": 9}


def test_an_entity_may_appear_once_per_transaction(table: TableClient) -> None:
    with pytest.raises(TableTransactionError) as info:
        table.submit_transaction(
            [
                ("upsert", {"PartitionKey": "b", "RowKey": "1"}),
                ("delete", {"PartitionKey": "b", "RowKey": "1"}),
            ]
        )
    assert info.value.error_code == "InvalidDuplicateRow"


def test_transaction_rolls_back_on_failure(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "b", "RowKey": "exists"})
    with pytest.raises(TableTransactionError) as info:
        table.submit_transaction(
            [
                ("create", {"PartitionKey": "b", "RowKey": "new1"}),
                ("create", {"PartitionKey": "b", "RowKey": "exists"}),
                ("create", {"PartitionKey": "b", "RowKey": "new2"}),
            ]
        )
    assert info.value.index == 1
    assert info.value.error_code == "EntityAlreadyExists"
    assert [e["RowKey"] for e in table.list_entities()] == ["exists"]


def test_transaction_across_partitions_is_refused(table: TableClient) -> None:
    with pytest.raises((TableTransactionError, HttpResponseError, ValueError)):
        table.submit_transaction(
            [
                ("create", {"PartitionKey": "a", "RowKey": "1"}),
                ("create", {"PartitionKey": "b", "RowKey": "1"}),
            ]
        )
    assert list(table.list_entities()) == []


@pytest.mark.azurite_differs("answers 403 AuthorizationFailure, not AuthenticationFailed")
def test_wrong_key_is_refused(storage: Endpoints, unique: str) -> None:
    svc = TableServiceClient.from_connection_string(storage.connection_string(key="A" * 86 + "=="))
    with pytest.raises(ClientAuthenticationError):
        svc.create_table(unique + "w")


def test_table_sas_permissions_and_expiry(storage: Endpoints, table: TableClient) -> None:
    from azure.core.credentials import AzureNamedKeyCredential

    cred = AzureNamedKeyCredential(storage.account, storage.key)
    endpoint = storage.url("table")
    read_only = generate_table_sas(
        cred, table.table_name, permission=TableSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    reader = TableClient(endpoint, table.table_name, credential=AzureSasCredential(read_only))
    assert [e["RowKey"] for e in reader.list_entities()] == ["r"]
    with pytest.raises(HttpResponseError) as info:
        reader.create_entity({"PartitionKey": "p", "RowKey": "r2"})
    assert info.value.status_code == 403
    expired = generate_table_sas(
        cred, table.table_name, permission=TableSasPermissions(read=True, add=True),
        expiry=datetime.now(UTC) - timedelta(minutes=1),
    )  # fmt: skip
    late = TableClient(endpoint, table.table_name, credential=AzureSasCredential(expired))
    with pytest.raises(HttpResponseError) as info2:
        list(late.list_entities())
    assert info2.value.status_code == 403


@pytest.mark.parametrize(
    "entity",
    [
        {"PartitionKey": "a/b", "RowKey": "r"},
        pytest.param(
            {"PartitionKey": "p", "RowKey": "r", "bad-name": 1},
            marks=pytest.mark.azurite_differs("accepts any property name"),
        ),
        {"PartitionKey": "p", "RowKey": "r", "s": "x" * 40000},
    ],
)
def test_bad_entities_are_refused(table: TableClient, entity: dict[str, object]) -> None:
    with pytest.raises(HttpResponseError) as info:
        table.create_entity(entity)
    assert info.value.status_code == 400
    assert list(table.list_entities()) == []


@pytest.mark.azurite_differs("ignores a table SAS's partition/row key range")
def test_table_sas_key_range_limits_the_entities(storage: Endpoints, table: TableClient) -> None:
    from azure.core.credentials import AzureNamedKeyCredential

    for pk in ("a", "b", "c"):
        table.create_entity({"PartitionKey": pk, "RowKey": "1"})
    sas = generate_table_sas(
        AzureNamedKeyCredential(storage.account, storage.key),
        table.table_name,
        permission=TableSasPermissions(read=True, add=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
        start_pk="b",
        end_pk="b",
    )
    limited = TableClient(
        storage.url("table"), table.table_name, credential=AzureSasCredential(sas)
    )
    assert [e["PartitionKey"] for e in limited.list_entities()] == ["b"]
    assert limited.get_entity("b", "1")["PartitionKey"] == "b"
    with pytest.raises(HttpResponseError) as info:
        limited.get_entity("a", "1")
    assert info.value.status_code in (403, 404)
    with pytest.raises(HttpResponseError):
        limited.create_entity({"PartitionKey": "c", "RowKey": "2"})
    limited.create_entity({"PartitionKey": "b", "RowKey": "2"})
