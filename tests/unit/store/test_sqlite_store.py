"""The SQLite backend passes the store conformance suite, and survives a reopen."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from cumulo.clock import FakeClock
from cumulo.errors import InputError
from cumulo.storage.store import SqliteStore, Store
from cumulo.storage.store.conformance import CHECKS, check_durability


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(tmp_path: Path, check: Callable[[Store], None]) -> None:
    store = SqliteStore(tmp_path, clock=FakeClock())
    try:
        check(store)
    finally:
        store.close()


def test_durability(tmp_path: Path) -> None:
    def reopen(store: Store) -> Store:
        store.close()
        return SqliteStore(tmp_path)

    check_durability(SqliteStore(tmp_path), reopen)


def test_uses_wal_and_content_addressed_files(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        info = store.put_package(b"abc")
        path = store.package_path(info.digest)
        assert path.name == info.digest.removeprefix("sha256:") and path.read_bytes() == b"abc"
        assert not stat.S_IMODE(os.stat(path).st_mode) & 0o002
    finally:
        store.close()


def test_a_newer_schema_is_refused_with_a_sentence(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "cumulo.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(InputError, match="has schema version 99"):
        SqliteStore(tmp_path)
