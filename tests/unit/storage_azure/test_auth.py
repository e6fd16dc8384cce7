"""SharedKey string-to-sign, the header order and SAS checks (pure, no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import (
    AccountSasPermissions,
    QueueSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_queue_sas,
)

from cumulo.errors import InputError
from cumulo.storage.azure.accounts import DEV_ACCOUNT, DEV_KEY, account_table, parse_accounts
from cumulo.storage.azure.auth import (
    Need,
    authenticate,
    canonical_query,
    header_compare,
    shared_key_string,
    sign,
    table_shared_key_string,
)
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import Request, parse_target

ACCOUNT = account_table()[DEV_ACCOUNT]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _request(method: str, target: str, headers: dict[str, str]) -> Request:
    raw_path, raw_query, query = parse_target(target)
    return Request(method, target, raw_path, raw_query, headers, b"", "127.0.0.1:5000", query)


def test_header_order_ignores_hyphens_first() -> None:
    names = ["x-ms-version", "x-ms-meta-b", "x-ms-date", "x-ms-meta-a", "x-ms-client-request-id"]
    from functools import cmp_to_key

    assert sorted(names, key=cmp_to_key(header_compare)) == [
        "x-ms-client-request-id",
        "x-ms-date",
        "x-ms-meta-a",
        "x-ms-meta-b",
        "x-ms-version",
    ]


def test_shared_key_string_has_verb_headers_resource_and_sorted_query() -> None:
    req = _request(
        "GET",
        "/devstoreaccount1/q/messages?numofmessages=32&visibilitytimeout=30",
        {"x-ms-date": "D", "x-ms-version": "V", "content-length": "0"},
    )
    text = shared_key_string(req, DEV_ACCOUNT)
    assert text == (
        "GET\n" + "\n" * 11 + "x-ms-date:D\nx-ms-version:V\n"
        "/devstoreaccount1/devstoreaccount1/q/messages"
        "\nnumofmessages:32\nvisibilitytimeout:30"
    )


def test_canonical_query_decodes_values_and_lowercases_names() -> None:
    assert canonical_query([("prefix", "a%20b"), ("Comp", "list")]) == "\ncomp:list\nprefix:a b"


def test_table_string_to_sign_uses_comp_only() -> None:
    req = _request(
        "GET", "/devstoreaccount1/t()?$filter=x&comp=acl", {"x-ms-date": "D", "content-type": "C"}
    )
    assert table_shared_key_string(req, DEV_ACCOUNT) == (
        "GET\n\nC\nD\n/devstoreaccount1/devstoreaccount1/t()?comp=acl"
    )


def test_valid_shared_key_passes_and_wrong_signature_fails() -> None:
    req = _request("DELETE", "/devstoreaccount1/q", {"x-ms-date": "D", "x-ms-version": "V"})
    good = sign(ACCOUNT.key, shared_key_string(req, DEV_ACCOUNT))
    req.headers["authorization"] = f"SharedKey {DEV_ACCOUNT}:{good}"
    authenticate(req, ACCOUNT, "queue", Need("c", "d"))
    req.headers["authorization"] = f"SharedKey {DEV_ACCOUNT}:{good[:-4]}AAA="
    with pytest.raises(StorageError) as info:
        authenticate(req, ACCOUNT, "queue", Need("c", "d"))
    assert (info.value.http_status, info.value.code) == (403, "AuthenticationFailed")


def test_no_credentials_at_all_is_refused() -> None:
    req = _request("GET", "/devstoreaccount1/q?comp=metadata", {})
    with pytest.raises(StorageError) as info:
        authenticate(req, ACCOUNT, "queue", Need("c", "r"))
    assert info.value.http_status == 403


def _account_sas(**perms: bool) -> str:
    return generate_account_sas(
        DEV_ACCOUNT,
        DEV_KEY,
        resource_types=ResourceTypes(object=True),
        permission=AccountSasPermissions(**perms),
        expiry=NOW + timedelta(hours=1),
        start=NOW - timedelta(hours=1),
    )


def test_account_sas_within_its_window_and_permissions() -> None:
    req = _request("POST", f"/devstoreaccount1/q/messages?{_account_sas(add=True)}", {})
    authenticate(req, ACCOUNT, "queue", Need("o", "a", queue="q"), now=NOW)


@pytest.mark.parametrize(
    ("now", "need", "code"),
    [
        (NOW + timedelta(hours=2), Need("o", "a", queue="q"), "AuthenticationFailed"),
        (NOW - timedelta(hours=2), Need("o", "a", queue="q"), "AuthenticationFailed"),
        (NOW, Need("o", "p", queue="q"), "AuthorizationPermissionMismatch"),
        (NOW, Need("c", "a"), "AuthorizationResourceTypeMismatch"),
    ],
)
def test_account_sas_refusals(now: datetime, need: Need, code: str) -> None:
    req = _request("POST", f"/devstoreaccount1/q/messages?{_account_sas(add=True)}", {})
    with pytest.raises(StorageError) as info:
        authenticate(req, ACCOUNT, "queue", need, now=now)
    assert info.value.code == code


def test_account_sas_for_another_service_is_a_service_mismatch() -> None:
    req = _request("GET", f"/devstoreaccount1/c?{_account_sas(read=True)}", {})
    with pytest.raises(StorageError) as info:
        authenticate(req, ACCOUNT, "blob", Need("o", "r", container="c", blob="b"), now=NOW)
    assert info.value.code == "AuthorizationServiceMismatch"


def test_queue_sas_is_bound_to_its_queue() -> None:
    sas = generate_queue_sas(
        DEV_ACCOUNT, "q1", DEV_KEY, permission=QueueSasPermissions(add=True),
        expiry=NOW + timedelta(hours=1),
    )  # fmt: skip
    ok = _request("POST", f"/devstoreaccount1/q1/messages?{sas}", {})
    authenticate(ok, ACCOUNT, "queue", Need("o", "a", queue="q1"), now=NOW)
    other = _request("POST", f"/devstoreaccount1/q2/messages?{sas}", {})
    with pytest.raises(StorageError) as info:
        authenticate(other, ACCOUNT, "queue", Need("o", "a", queue="q2"), now=NOW)
    assert info.value.code == "AuthenticationFailed"


def test_tampered_sas_fails() -> None:
    sas = _account_sas(add=True).replace("sp=a", "sp=ap")
    req = _request("GET", f"/devstoreaccount1/q/messages?{sas}", {})
    with pytest.raises(StorageError) as info:
        authenticate(req, ACCOUNT, "queue", Need("o", "p", queue="q"), now=NOW)
    assert info.value.code == "AuthenticationFailed"


def test_accounts_parse_and_reject_bad_input() -> None:
    (acct,) = parse_accounts("myacct:" + DEV_KEY)
    assert acct.name == "myacct"
    assert "myacct" in account_table([acct])
    assert DEV_ACCOUNT in account_table([acct])
    with pytest.raises(InputError, match="not valid base64"):
        parse_accounts("myacct:!!!")
    with pytest.raises(InputError, match="NAME:BASE64KEY"):
        parse_accounts("nokey")
    with pytest.raises(InputError, match="invalid"):
        parse_accounts("Bad_Name:" + DEV_KEY)
    cs = acct.connection_string("127.0.0.1", 1, 2, 3)
    assert "AccountName=myacct" in cs
    assert "QueueEndpoint=http://127.0.0.1:2/myacct" in cs
