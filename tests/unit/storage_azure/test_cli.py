"""`cumulo storage connection-string`: what a role's StorageConnectionString gets."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cumulo.cli.storage_cmds import storage
from cumulo.storage.azure.accounts import DEV_KEY


def test_default_account_connection_string() -> None:
    result = CliRunner().invoke(storage, ["connection-string"])
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    )


def test_extra_account_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUMULO_STORAGE_ACCOUNTS", f"svcone:{DEV_KEY}")
    result = CliRunner().invoke(
        storage, ["connection-string", "--account", "svcone", "--queue-port", "20001"]
    )
    assert result.exit_code == 0
    assert "AccountName=svcone;" in result.output
    assert "QueueEndpoint=http://127.0.0.1:20001/svcone;" in result.output


def test_unknown_account_is_a_usage_error() -> None:
    result = CliRunner().invoke(storage, ["connection-string", "--account", "nosuch"])
    assert result.exit_code == 2
    assert "no storage account 'nosuch'" in result.output


def test_bad_port_is_a_usage_error() -> None:
    result = CliRunner().invoke(storage, ["serve", "--queue-port", "70000"])
    assert result.exit_code == 2
    assert "not a port" in result.output
