"""The desired-state store: the ``Store`` protocol, its records, and the SQLite backend.

``cumulo.storage.store.conformance.check_store(factory)`` is the one test body every backend
passes. (The Azure-compatible storage *service* for role state lives in ``storage/azure``.)
"""

from cumulo.storage.store.protocol import Store
from cumulo.storage.store.records import (
    AutoscaleRecord,
    CertificateRecord,
    DeploymentRecord,
    EventRecord,
    OperationRecord,
    OperationStatus,
    PackageInfo,
    PreconditionFailed,
    ServiceRecord,
)
from cumulo.storage.store.sqlite import SqliteStore

__all__ = [
    "AutoscaleRecord",
    "CertificateRecord",
    "DeploymentRecord",
    "EventRecord",
    "OperationRecord",
    "OperationStatus",
    "PackageInfo",
    "PreconditionFailed",
    "ServiceRecord",
    "SqliteStore",
    "Store",
]
