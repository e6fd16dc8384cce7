"""``SqliteStore``: the desired-state store in one SQLite file (WAL) in the data directory.

Layout of the data directory it owns::

    <dir>/cumulo.db            services, deployments, operations, events, certificates,
                               autoscale settings
    <dir>/packages/<hex>       package bytes by content digest (written once, then renamed in)

One connection, serialised by a lock (the controller process is the only writer; SQLite in WAL
mode with ``synchronous=NORMAL`` survives a kill -9 of the process with every committed write).
Each method is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.errors import ConflictError, InputError, NotFoundError
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

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    slot TEXT NOT NULL,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,
    package_digest TEXT NOT NULL,
    configuration TEXT NOT NULL,
    document TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (service, slot)
);
CREATE TABLE IF NOT EXISTS packages (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    slot TEXT,
    deployment_id TEXT,
    status TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    error_code TEXT,
    error_message TEXT,
    request TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_status ON operations(status);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    service TEXT NOT NULL,
    slot TEXT,
    deployment_id TEXT,
    name TEXT NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_service ON events(service, seq);
CREATE TABLE IF NOT EXISTS controller_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    service TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (service, thumbprint)
);
CREATE TABLE IF NOT EXISTS autoscale (
    service TEXT NOT NULL,
    slot TEXT NOT NULL,
    role TEXT NOT NULL,
    document TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, slot, role)
);
"""

_SLOTS = ("production", "staging")


def _digest_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise InputError(f"Package digest {digest!r} is not of the form sha256:<64 hex digits>.")
    return hexpart


class SqliteStore:
    """The default ``Store``; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "packages").mkdir(exist_ok=True)
        self._clock = clock or SystemClock()
        self._lock = threading.RLock()
        db_path = self.directory / "cumulo.db"
        if not db_path.exists():
            # Private: the store holds certificates' private keys.
            os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"{self.directory / 'cumulo.db'} has schema version {version}; this cumulo "
                    f"knows up to {SCHEMA_VERSION}. Use a newer cumulo with this data directory."
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- services ------------------------------------------------------------------------------

    def create_service(self, service: ServiceRecord) -> ServiceRecord:
        record = ServiceRecord(service.name, service.label, service.description, self._clock.wall())
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO services VALUES (?, ?, ?, ?)",
                    (record.name, record.label, record.description, record.created_at),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"Service {service.name!r} already exists.") from None
        return record

    def get_service(self, name: str) -> ServiceRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"Service {name!r} does not exist.")
        return ServiceRecord(row["name"], row["label"], row["description"], row["created_at"])

    def list_services(self) -> list[ServiceRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM services ORDER BY name").fetchall()
        return [
            ServiceRecord(r["name"], r["label"], r["description"], r["created_at"]) for r in rows
        ]

    def delete_service(self, name: str) -> None:
        with self._tx() as db:
            self._require_service(db, name)
            slots = [
                r["slot"]
                for r in db.execute(
                    "SELECT slot FROM deployments WHERE service = ? ORDER BY slot", (name,)
                )
            ]
            if slots:
                raise ConflictError(
                    f"Service {name!r} still has deployments ({', '.join(slots)}); "
                    "delete them first."
                )
            db.execute("DELETE FROM certificates WHERE service = ?", (name,))
            db.execute("DELETE FROM autoscale WHERE service = ?", (name,))
            db.execute("DELETE FROM services WHERE name = ?", (name,))

    def _require_service(self, db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone() is None:
            raise NotFoundError(f"Service {name!r} does not exist.")

    # -- deployments ---------------------------------------------------------------------------

    @staticmethod
    def _deployment(row: sqlite3.Row) -> DeploymentRecord:
        return DeploymentRecord(
            id=row["id"],
            service=row["service"],
            slot=row["slot"],
            name=row["name"],
            status=row["status"],
            package_digest=row["package_digest"],
            configuration=row["configuration"],
            document=json.loads(row["document"]),
            label=row["label"],
            revision=row["revision"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def create_deployment(self, deployment: DeploymentRecord) -> DeploymentRecord:
        if deployment.slot not in _SLOTS:
            raise InputError(f"Slot {deployment.slot!r} does not exist; use production or staging.")
        now = self._clock.wall()
        dep_id = deployment.id or uuid.uuid4().hex
        with self._tx() as db:
            self._require_service(db, deployment.service)
            taken = db.execute(
                "SELECT id FROM deployments WHERE service = ? AND slot = ?",
                (deployment.service, deployment.slot),
            ).fetchone()
            if taken is not None:
                raise ConflictError(
                    f"The {deployment.slot} slot of service {deployment.service!r} already holds "
                    f"deployment {taken['id']}; delete it or upgrade it instead."
                )
            try:
                db.execute(
                    "INSERT INTO deployments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        dep_id,
                        deployment.service,
                        deployment.slot,
                        deployment.name or dep_id,
                        deployment.label,
                        deployment.status,
                        deployment.package_digest,
                        deployment.configuration,
                        json.dumps(dict(deployment.document), sort_keys=True),
                        1,
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"Deployment id {dep_id} is already used.") from None
            row = db.execute("SELECT * FROM deployments WHERE id = ?", (dep_id,)).fetchone()
        return self._deployment(row)

    def get_deployment(self, service: str, slot: str) -> DeploymentRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deployments WHERE service = ? AND slot = ?", (service, slot)
            ).fetchone()
            if row is None:
                self._require_service(self._db, service)
                raise NotFoundError(f"Service {service!r} has no deployment in the {slot} slot.")
        return self._deployment(row)

    def get_deployment_by_id(self, deployment_id: str) -> DeploymentRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deployments WHERE id = ?", (deployment_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Deployment {deployment_id!r} does not exist.")
        return self._deployment(row)

    def list_deployments(self, service: str | None = None) -> list[DeploymentRecord]:
        with self._lock:
            if service is None:
                rows = self._db.execute("SELECT * FROM deployments ORDER BY service, slot")
            else:
                rows = self._db.execute(
                    "SELECT * FROM deployments WHERE service = ? ORDER BY slot", (service,)
                )
            return [self._deployment(r) for r in rows.fetchall()]

    def _locked_row(
        self, db: sqlite3.Connection, deployment_id: str, expect_revision: int | None
    ) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM deployments WHERE id = ?", (deployment_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"Deployment {deployment_id!r} does not exist.")
        if expect_revision is not None and row["revision"] != expect_revision:
            raise PreconditionFailed(
                f"Deployment {deployment_id} is at revision {row['revision']}, not "
                f"{expect_revision}; it changed since it was read. Read it again and retry."
            )
        return row

    def update_deployment(
        self,
        deployment_id: str,
        *,
        expect_revision: int | None = None,
        status: str | None = None,
        document: Mapping[str, Any] | None = None,
        configuration: str | None = None,
        package_digest: str | None = None,
    ) -> DeploymentRecord:
        with self._tx() as db:
            row = self._locked_row(db, deployment_id, expect_revision)
            db.execute(
                "UPDATE deployments SET status = ?, document = ?, configuration = ?, "
                "package_digest = ?, revision = ?, updated_at = ? WHERE id = ?",
                (
                    status if status is not None else row["status"],
                    json.dumps(dict(document), sort_keys=True)
                    if document is not None
                    else row["document"],
                    configuration if configuration is not None else row["configuration"],
                    package_digest if package_digest is not None else row["package_digest"],
                    row["revision"] + 1,
                    self._clock.wall(),
                    deployment_id,
                ),
            )
            new = db.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
        return self._deployment(new)

    def delete_deployment(self, deployment_id: str, *, expect_revision: int | None = None) -> None:
        with self._tx() as db:
            self._locked_row(db, deployment_id, expect_revision)
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))

    def swap_slots(self, service: str) -> list[DeploymentRecord]:
        now = self._clock.wall()
        with self._tx() as db:
            self._require_service(db, service)
            rows = {
                r["slot"]: r
                for r in db.execute("SELECT * FROM deployments WHERE service = ?", (service,))
            }
            if "staging" not in rows:
                raise ConflictError(f"Service {service!r} has no deployment in staging to swap.")
            # Park production on a temporary slot name so the UNIQUE constraint holds.
            if "production" in rows:
                db.execute(
                    "UPDATE deployments SET slot = '~swap' WHERE id = ?",
                    (rows["production"]["id"],),
                )
            db.execute(
                "UPDATE deployments SET slot = 'production', revision = revision + 1, "
                "updated_at = ? WHERE id = ?",
                (now, rows["staging"]["id"]),
            )
            if "production" in rows:
                db.execute(
                    "UPDATE deployments SET slot = 'staging', revision = revision + 1, "
                    "updated_at = ? WHERE id = ?",
                    (now, rows["production"]["id"]),
                )
            out = db.execute(
                "SELECT * FROM deployments WHERE service = ? ORDER BY slot", (service,)
            ).fetchall()
        return [self._deployment(r) for r in out]

    # -- packages ------------------------------------------------------------------------------

    def put_package(self, data: bytes) -> PackageInfo:
        hexpart = hashlib.sha256(data).hexdigest()
        digest = f"sha256:{hexpart}"
        path = self.directory / "packages" / hexpart
        if not path.exists():
            tmp = path.with_name(f".{hexpart}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO packages VALUES (?, ?, ?)",
                (digest, len(data), self._clock.wall()),
            )
            row = db.execute("SELECT * FROM packages WHERE digest = ?", (digest,)).fetchone()
        return PackageInfo(row["digest"], row["size"], row["created_at"])

    def package_info(self, digest: str) -> PackageInfo:
        _digest_hex(digest)
        with self._lock:
            row = self._db.execute("SELECT * FROM packages WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise NotFoundError(f"Package {digest} is not in the store; upload it first.")
        return PackageInfo(row["digest"], row["size"], row["created_at"])

    def get_package(self, digest: str) -> bytes:
        self.package_info(digest)
        return self.package_path(digest).read_bytes()

    def package_path(self, digest: str) -> Path:
        """Where the bytes of a stored package are (SQLite backend only)."""
        return self.directory / "packages" / _digest_hex(digest)

    # -- operations ----------------------------------------------------------------------------

    @staticmethod
    def _operation(row: sqlite3.Row) -> OperationRecord:
        return OperationRecord(
            id=row["id"],
            kind=row["kind"],
            service=row["service"],
            slot=row["slot"],
            deployment_id=row["deployment_id"],
            status=OperationStatus(row["status"]),
            http_status=row["http_status"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            request=json.loads(row["request"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def create_operation(self, operation: OperationRecord) -> OperationRecord:
        now = self._clock.wall()
        op_id = operation.id or uuid.uuid4().hex
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO operations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        op_id,
                        operation.kind,
                        operation.service,
                        operation.slot,
                        operation.deployment_id,
                        operation.status.value,
                        operation.http_status,
                        operation.error_code,
                        operation.error_message,
                        json.dumps(dict(operation.request), sort_keys=True),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"Operation {op_id} already exists.") from None
            row = db.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
        return self._operation(row)

    def get_operation(self, operation_id: str) -> OperationRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM operations WHERE id = ?", (operation_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Operation {operation_id!r} does not exist.")
        return self._operation(row)

    def list_operations(
        self, *, service: str | None = None, status: OperationStatus | None = None
    ) -> list[OperationRecord]:
        query, args = "SELECT * FROM operations WHERE 1=1", []
        if service is not None:
            query += " AND service = ?"
            args.append(service)
        if status is not None:
            query += " AND status = ?"
            args.append(status.value)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [self._operation(r) for r in rows]

    def finish_operation(
        self,
        operation_id: str,
        status: OperationStatus,
        *,
        http_status: int = 200,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> OperationRecord:
        if status is OperationStatus.IN_PROGRESS:
            raise InputError("An operation finishes as Succeeded or Failed, not InProgress.")
        with self._tx() as db:
            row = db.execute("SELECT * FROM operations WHERE id = ?", (operation_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Operation {operation_id!r} does not exist.")
            if row["status"] != OperationStatus.IN_PROGRESS.value:
                raise ConflictError(f"Operation {operation_id} already finished ({row['status']}).")
            db.execute(
                "UPDATE operations SET status = ?, http_status = ?, error_code = ?, "
                "error_message = ?, updated_at = ? WHERE id = ?",
                (
                    status.value,
                    http_status,
                    error_code,
                    error_message,
                    self._clock.wall(),
                    operation_id,
                ),
            )
            new = db.execute("SELECT * FROM operations WHERE id = ?", (operation_id,)).fetchone()
        return self._operation(new)

    # -- events --------------------------------------------------------------------------------

    def append_event(
        self,
        service: str,
        name: str,
        *,
        slot: str | None = None,
        deployment_id: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> EventRecord:
        now = self._clock.wall()
        body = json.dumps(dict(fields or {}), sort_keys=True, default=str)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO events (time, service, slot, deployment_id, name, fields) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (now, service, slot, deployment_id, name, body),
            )
            seq = cur.lastrowid
        assert seq is not None
        return EventRecord(seq, now, service, name, slot, deployment_id, json.loads(body))

    def list_events(
        self,
        service: str,
        *,
        after: int = 0,
        slot: str | None = None,
        limit: int = 1000,
    ) -> Sequence[EventRecord]:
        query = "SELECT * FROM events WHERE service = ? AND seq > ?"
        args: list[Any] = [service, after]
        if slot is not None:
            query += " AND slot = ?"
            args.append(slot)
        query += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            EventRecord(
                r["seq"],
                r["time"],
                r["service"],
                r["name"],
                r["slot"],
                r["deployment_id"],
                json.loads(r["fields"]),
            )
            for r in rows
        ]

    # -- controller state ----------------------------------------------------------------------

    def get_controller_state(self, prefix: str = "") -> dict[str, str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM controller_state WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
        return {r["key"]: r["value"] for r in rows}

    def set_controller_state(self, items: Mapping[str, str | None]) -> None:
        with self._tx() as db:
            for key, value in items.items():
                if value is None:
                    db.execute("DELETE FROM controller_state WHERE key = ?", (key,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO controller_state VALUES (?, ?)", (key, value)
                    )

    # -- certificates --------------------------------------------------------------------------

    def put_certificate(self, certificate: CertificateRecord) -> CertificateRecord:
        record = CertificateRecord(
            certificate.service,
            certificate.thumbprint.upper(),
            certificate.algorithm,
            certificate.pem,
            self._clock.wall(),
        )
        with self._tx() as db:
            self._require_service(db, record.service)
            db.execute(
                "INSERT OR REPLACE INTO certificates VALUES (?, ?, ?, ?, ?)",
                (
                    record.service,
                    record.thumbprint,
                    record.algorithm,
                    record.pem,
                    record.created_at,
                ),
            )
        return record

    def list_certificates(self, service: str) -> list[CertificateRecord]:
        with self._lock:
            self._require_service(self._db, service)
            rows = self._db.execute(
                "SELECT * FROM certificates WHERE service = ? ORDER BY thumbprint", (service,)
            ).fetchall()
        return [
            CertificateRecord(
                r["service"], r["thumbprint"], r["algorithm"], r["pem"], r["created_at"]
            )
            for r in rows
        ]

    def delete_certificate(self, service: str, thumbprint: str) -> None:
        with self._tx() as db:
            self._require_service(db, service)
            cur = db.execute(
                "DELETE FROM certificates WHERE service = ? AND thumbprint = ?",
                (service, thumbprint.upper()),
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"Service {service!r} has no certificate with thumbprint {thumbprint.upper()}."
                )

    # -- autoscale settings --------------------------------------------------------------------

    @staticmethod
    def _autoscale(row: sqlite3.Row) -> AutoscaleRecord:
        return AutoscaleRecord(
            row["service"], row["slot"], row["role"], json.loads(row["document"]), row["updated_at"]
        )

    def put_autoscale(self, record: AutoscaleRecord) -> AutoscaleRecord:
        if record.slot not in _SLOTS:
            raise InputError(f"Slot {record.slot!r} does not exist; use production or staging.")
        stored = AutoscaleRecord(
            record.service, record.slot, record.role, record.document, self._clock.wall()
        )
        with self._tx() as db:
            self._require_service(db, record.service)
            db.execute(
                "INSERT OR REPLACE INTO autoscale VALUES (?, ?, ?, ?, ?)",
                (
                    stored.service,
                    stored.slot,
                    stored.role,
                    json.dumps(dict(stored.document), sort_keys=True),
                    stored.updated_at,
                ),
            )
        return stored

    def get_autoscale(self, service: str, slot: str, role: str) -> AutoscaleRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM autoscale WHERE service = ? AND slot = ? AND role = ?",
                (service, slot, role),
            ).fetchone()
            if row is None:
                self._require_service(self._db, service)
                raise NotFoundError(
                    f"Role {role!r} of the {slot} slot of service {service!r} has no autoscale "
                    "setting."
                )
        return self._autoscale(row)

    def list_autoscale(self, service: str | None = None) -> list[AutoscaleRecord]:
        with self._lock:
            if service is None:
                rows = self._db.execute("SELECT * FROM autoscale ORDER BY service, slot, role")
            else:
                self._require_service(self._db, service)
                rows = self._db.execute(
                    "SELECT * FROM autoscale WHERE service = ? ORDER BY slot, role", (service,)
                )
            return [self._autoscale(r) for r in rows.fetchall()]

    def delete_autoscale(self, service: str, slot: str, role: str) -> None:
        with self._tx() as db:
            self._require_service(db, service)
            cur = db.execute(
                "DELETE FROM autoscale WHERE service = ? AND slot = ? AND role = ?",
                (service, slot, role),
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"Role {role!r} of the {slot} slot of service {service!r} has no autoscale "
                    "setting."
                )
