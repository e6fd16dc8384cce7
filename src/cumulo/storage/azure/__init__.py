"""cumulo's Azure-compatible storage service: queues, blobs and tables over HTTP.

Unchanged role code using ``azure-storage-queue``, ``azure-storage-blob`` and
``azure-data-tables`` talks to it with ``UseDevelopmentStorage=true`` (127.0.0.1:10000-10002,
account ``devstoreaccount1``) or an explicit connection string. State lives in one SQLite
database (WAL, fsync per acknowledged write by default) plus blob content files.
See docs/storage.md.
"""

from __future__ import annotations

from cumulo.storage.azure.accounts import DEV_ACCOUNT, DEV_KEY, Account, make_account
from cumulo.storage.azure.server import StorageApp, StorageSettings, run, run_forever

__all__ = [
    "DEV_ACCOUNT",
    "DEV_KEY",
    "Account",
    "StorageApp",
    "StorageSettings",
    "make_account",
    "run",
    "run_forever",
]
