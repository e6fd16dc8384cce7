"""The web role's storage: one table, two blob containers and one queue, through the Azure SDKs.

The connection string comes from the role's ``StorageConnectionString`` setting (``cumulo.sdk``'s
``RoleEnvironment``, which sees online changes), or outside cumulo from the
``STORAGE_CONNECTION_STRING``/``AZURE_STORAGE_CONNECTION_STRING`` environment variables, else
``UseDevelopmentStorage=true`` (127.0.0.1:10000-10002, what ``cumulo storage`` serves).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, ContentSettings, LinearRetry
from azure.storage.queue import QueueServiceClient
from entries import Signature, partition_key, picture_blob_name, row_key

# These names are the contract between the two roles (WorkerRole/worker.py repeats them; a unit
# test checks that both agree).
SETTING = "StorageConnectionString"
TABLE = "guestbook"
PICTURES = "guestbook-pictures"
THUMBNAILS = "guestbook-thumbnails"
QUEUE = "guestbook-thumbnails"
ENV_VARS = ("STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
DEFAULT_CONNECTION_STRING = "UseDevelopmentStorage=true"

# The storage SDKs' default retry waits 15 s and more between attempts; a visitor would wait
# a minute for an error page while storage restarts. Retry three times within about 1.5 s.
RETRY_TOTAL = 3
RETRY_BACKOFF = 0.5


def client_options() -> dict[str, Any]:
    """Keyword arguments for the blob and queue clients (a fresh retry policy per client)."""
    return {
        # (typed as int seconds, used as float ones)
        "retry_policy": LinearRetry(
            backoff=RETRY_BACKOFF,  # type: ignore[arg-type]
            retry_total=RETRY_TOTAL,
            random_jitter_range=0.2,  # type: ignore[arg-type]
        ),
        "connection_timeout": 5,
        "read_timeout": 30,
    }


def table_options() -> dict[str, Any]:
    """Keyword arguments for the table client (azure-core's retry: 0 s, 0.5 s, 1 s)."""
    return {
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": RETRY_BACKOFF / 2,
        "retry_backoff_max": 2,
        "connection_timeout": 5,
        "read_timeout": 30,
    }


_from_role: str | None = None
_source = "default"


def connection_string() -> str:
    """The storage connection string this instance should use now (see the module docstring)."""
    global _from_role, _source
    role_environment: Any = None
    with contextlib.suppress(ImportError):  # outside cumulo the SDK is not there
        from cumulo.sdk import RoleEnvironment as role_environment
    if role_environment is not None and os.environ.get("CUMULO_AGENT_SOCKET"):
        if role_environment.is_available:
            _from_role = role_environment.get_configuration_setting_value(SETTING)
            _source = f"role setting {SETTING}"
            return _from_role
        if _from_role is not None:  # the agent is restarting: keep the last value it gave
            return _from_role
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            _source = f"environment variable {var}"
            return value
    _source = "default"
    return DEFAULT_CONNECTION_STRING


def describe(conn: str) -> str:
    """Where a connection string points, without its key (for the log)."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return "development storage (127.0.0.1:10000-10002)"
    where = parts.get("BlobEndpoint") or parts.get("EndpointSuffix") or "?"
    return f"account {parts.get('AccountName', '?')} at {where}"


def log(event: str, **fields: Any) -> None:
    """One line per event on stderr (the instance's site.log)."""
    parts = [event] + [
        f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in fields.items()
    ]
    print(" ".join(parts), file=sys.stderr, flush=True)


@dataclass
class Entry:
    """An entry as the page shows it."""

    partition: str
    row: str
    name: str
    message: str
    created: datetime | None
    picture: str | None
    thumbnail: str | None
    thumbnail_state: str


class GuestbookStore:
    """Clients for one connection string; creates the table, containers and queue once."""

    def __init__(self, conn: str) -> None:
        self.connection_string = conn
        self.tables = TableServiceClient.from_connection_string(conn, **table_options())
        self.blobs = BlobServiceClient.from_connection_string(conn, **client_options())
        self.queues = QueueServiceClient.from_connection_string(conn, **client_options())
        self.table = self.tables.get_table_client(TABLE)
        self.pictures = self.blobs.get_container_client(PICTURES)
        self.thumbnails = self.blobs.get_container_client(THUMBNAILS)
        self.queue = self.queues.get_queue_client(QUEUE)
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create what is missing (idempotent; another instance may be doing the same)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.tables.create_table_if_not_exists(TABLE)
            for container in (self.pictures, self.thumbnails):
                with contextlib.suppress(ResourceExistsError):
                    container.create_container()
            with contextlib.suppress(ResourceExistsError):
                self.queue.create_queue()
            self._ready = True

    def sign(self, signature: Signature, *, now_ns: int | None = None) -> dict[str, Any]:
        """Write a signature: picture blob, then the entry, then the thumbnail request.

        Only when all three are written is the visitor told it worked, so an acknowledged entry
        with a picture always has its queue message. If the message cannot be sent, the entry is
        removed again (best effort) and the error propagates.
        """
        self.ensure()
        ns = time.time_ns() if now_ns is None else now_ns
        created = datetime.fromtimestamp(ns / 1e9, UTC)
        entity: dict[str, Any] = {
            "PartitionKey": partition_key(created),
            "RowKey": row_key(ns),
            "Name": signature.name,
            "Message": signature.message,
            "CreatedAt": created,
            "ThumbnailState": "none",
        }
        picture = signature.picture
        if picture is not None:
            blob_name = picture_blob_name(entity["RowKey"], picture.extension)
            self.pictures.upload_blob(
                blob_name,
                picture.data,
                overwrite=True,
                content_settings=ContentSettings(content_type=picture.content_type),
            )
            entity["PictureBlob"] = blob_name
            entity["PictureUrl"] = self.pictures.get_blob_client(blob_name).url
            entity["ThumbnailState"] = "pending"
        self.table.create_entity(entity)
        if picture is not None:
            request = {"pk": entity["PartitionKey"], "rk": entity["RowKey"]}
            try:
                self.queue.send_message(json.dumps(request))
            except Exception:
                try:
                    self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                except Exception as exc:  # storage is away: the entry stays, thumbnail-less
                    log("guestbook.compensation_failed", row=entity["RowKey"], error=str(exc))
                raise
        log(
            "guestbook.signed",
            partition=entity["PartitionKey"],
            row=entity["RowKey"],
            picture=entity.get("PictureBlob", ""),
        )
        return entity

    def recent(
        self, limit: int = 50, days: int = 7, *, today: datetime | None = None
    ) -> list[Entry]:
        """Newest entries first: today's partition, then the days before, up to ``limit``."""
        self.ensure()
        day = (today or datetime.now(UTC)).astimezone(UTC)
        found: list[Entry] = []
        for offset in range(days):
            remaining = limit - len(found)
            if remaining <= 0:
                break
            pk = partition_key(day - timedelta(days=offset))
            rows = self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": pk}, results_per_page=remaining
            )
            for entity in rows:
                found.append(_entry(entity))
                if len(found) >= limit:
                    break
        return found

    def open_blob(self, container: str, name: str) -> tuple[int, Iterator[bytes]]:
        """(size, chunks) of a picture or thumbnail; ResourceNotFoundError when it is absent."""
        client = self.pictures if container == PICTURES else self.thumbnails
        downloader = client.download_blob(name)
        return downloader.size, downloader.chunks()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _entry(entity: Any) -> Entry:
    created = entity.get("CreatedAt")
    return Entry(
        partition=str(entity["PartitionKey"]),
        row=str(entity["RowKey"]),
        name=str(entity.get("Name", "")),
        message=str(entity.get("Message", "")),
        created=_aware(created) if isinstance(created, datetime) else None,
        picture=entity.get("PictureBlob") or None,
        thumbnail=entity.get("ThumbnailBlob") or None,
        thumbnail_state=str(entity.get("ThumbnailState", "none")),
    )


_stores: dict[str, GuestbookStore] = {}
_stores_lock = threading.Lock()


def store_for(conn: str) -> GuestbookStore:
    """One store per connection string, so a changed setting takes effect on the next request."""
    with _stores_lock:
        store = _stores.get(conn)
        if store is None:
            store = _stores[conn] = GuestbookStore(conn)
            log("guestbook.storage", source=_source, target=describe(conn))
        return store


__all__ = ["GuestbookStore", "ResourceNotFoundError", "connection_string", "store_for"]
