"""The guestbook's worker role: turns thumbnail requests from the queue into thumbnails.

For each queue message ``{"pk": PartitionKey, "rk": RowKey}`` (sent by the web role after it
stored an entry with a picture) the worker downloads the picture, makes a thumbnail (Pillow),
uploads it to the thumbnails container, merges ``ThumbnailBlob``/``ThumbnailUrl`` into the
entry, then deletes the message.

Every step is idempotent, so a message that is processed again — its instance was killed after
some of the steps, or its visibility timeout ran out while another instance was still working —
does no harm: the thumbnail's blob name is fixed by the entry, an entry that already has its
thumbnail only gets its message deleted, and deleting a message someone else already deleted is
not an error. A message received more than ``MAX_DEQUEUE`` times (a "poison" message) is logged
and removed.

Run by cumulo (ServiceDefinition.csdef): ``python -m cumulo.sdk.run worker:Worker``; the
connection string is the role's ``StorageConnectionString`` setting, read through
``RoleEnvironment`` (so a changed setting is used from the next message on). Outside cumulo:
``STORAGE_CONNECTION_STRING=... python worker.py`` (default ``UseDevelopmentStorage=true``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContentSettings, LinearRetry
from azure.storage.queue import QueueMessage, QueueServiceClient
from thumbnail import ThumbnailError, make_thumbnail

try:
    from cumulo.sdk import RoleEntryPoint, RoleEnvironment
except ImportError:  # outside cumulo: a stand-in with the same shape

    class RoleEntryPoint:  # type: ignore[no-redef]
        def __init__(self) -> None:
            self.stop_requested = threading.Event()

        def on_start(self) -> bool:
            return True

        def run(self) -> None:
            self.stop_requested.wait()

        def on_stop(self) -> None:
            return None

    RoleEnvironment = None  # type: ignore[assignment]


# The contract with the web role (WebRole/webstore.py; a unit test checks both agree).
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


MAX_DEQUEUE = 5
"""A message received more often than this is poison: logged and deleted."""
VISIBILITY_TIMEOUT = 30
"""Seconds a received message stays invisible to the other instances while this one works
(Azure's default). A thumbnail takes well under a second; the message of an instance that was
killed comes back after this long."""
STOP_WAIT = 10.0
"""On stop, how long OnStop waits for the message in hand to be finished (seconds)."""
BATCH = 16
IDLE_WAIT_MAX = 1.0
"""Longest pause between polls of an empty queue (seconds); the pause doubles from 50 ms."""

_from_role: str | None = None
_source = "default"


def log(event: str, **fields: Any) -> None:
    """One line per event on stdout (the instance's entry.log)."""
    parts = [event] + [
        f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in fields.items()
    ]
    print(" ".join(parts), flush=True)


def connection_string() -> str:
    """The role's StorageConnectionString, else the environment, else development storage."""
    global _from_role, _source
    if RoleEnvironment is not None and os.environ.get("CUMULO_AGENT_SOCKET"):
        if RoleEnvironment.is_available:
            _from_role = RoleEnvironment.get_configuration_setting_value(SETTING)
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


class WorkerStore:
    """Clients for one connection string; creates what the worker needs once."""

    def __init__(self, conn: str) -> None:
        self.connection_string = conn
        self.tables = TableServiceClient.from_connection_string(conn, **table_options())
        self.blobs = BlobServiceClient.from_connection_string(conn, **client_options())
        self.table = self.tables.get_table_client(TABLE)
        self.pictures = self.blobs.get_container_client(PICTURES)
        self.thumbnails = self.blobs.get_container_client(THUMBNAILS)
        self.queue = QueueServiceClient.from_connection_string(
            conn, **client_options()
        ).get_queue_client(QUEUE)
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        self.tables.create_table_if_not_exists(TABLE)
        for container in (self.pictures, self.thumbnails):
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
        with contextlib.suppress(ResourceExistsError):
            self.queue.create_queue()
        self._ready = True


@dataclass(frozen=True)
class Outcome:
    """What became of one message: ``status`` is a word for logs and tests."""

    status: str  # made | already | poison | malformed | no-entry | no-picture | unreadable
    detail: str = ""


def parse_request(content: str) -> tuple[str, str] | None:
    """(PartitionKey, RowKey) from a message's content, or None when it is not a request."""
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pk, rk = data.get("pk"), data.get("rk")
    if not (isinstance(pk, str) and isinstance(rk, str) and pk and rk):
        return None
    if any(c in s for s in (pk, rk) for c in "/\\#?'") or len(pk) > 64 or len(rk) > 64:
        return None
    return pk, rk


def thumbnail_name(row_key: str) -> str:
    return f"{row_key}.jpg"


def _delete(store: WorkerStore, message: QueueMessage) -> None:
    """Delete a message; one that is gone or was received again elsewhere is not an error."""
    try:
        store.queue.delete_message(message)
    except ResourceNotFoundError:
        pass
    except HttpResponseError as exc:
        if exc.status_code not in (400, 404):  # 400 PopReceiptMismatch: another receiver has it
            raise


def process_message(store: WorkerStore, message: QueueMessage) -> Outcome:
    """Handle one received message; transient storage errors propagate (the message stays)."""
    outcome = _process(store, message)
    _delete(store, message)
    log(
        "thumbnail." + outcome.status,
        message=message.id,
        dequeue_count=message.dequeue_count or 0,
        detail=outcome.detail,
    )
    return outcome


def _process(store: WorkerStore, message: QueueMessage) -> Outcome:
    if (message.dequeue_count or 0) > MAX_DEQUEUE:
        return Outcome(
            "poison", f"received {message.dequeue_count} times: {message.content!r:.200}"
        )
    keys = parse_request(message.content)
    if keys is None:
        return Outcome("malformed", f"{message.content!r:.200}")
    pk, rk = keys
    try:
        entity = store.table.get_entity(pk, rk)
    except ResourceNotFoundError:
        return Outcome("no-entry", f"{pk}/{rk}")
    name = thumbnail_name(rk)
    if entity.get("ThumbnailBlob") == name:
        return Outcome("already", f"{pk}/{rk}")
    picture = entity.get("PictureBlob")
    if not picture:
        return Outcome("no-picture", f"{pk}/{rk} has no picture")
    try:
        data = store.pictures.download_blob(picture).readall()
    except ResourceNotFoundError:
        return Outcome("no-picture", f"{pk}/{rk}: blob {picture} is gone")
    try:
        thumb = make_thumbnail(data)
    except ThumbnailError as exc:
        _merge(store, pk, rk, {"ThumbnailState": "failed", "ThumbnailError": str(exc)[:500]})
        return Outcome("unreadable", str(exc))
    blob = store.thumbnails.upload_blob(
        name, thumb, overwrite=True, content_settings=ContentSettings(content_type="image/jpeg")
    )
    _merge(
        store,
        pk,
        rk,
        {"ThumbnailBlob": name, "ThumbnailUrl": blob.url, "ThumbnailState": "done"},
    )
    return Outcome("made", f"{pk}/{rk} -> {name} ({len(thumb)} bytes)")


def _merge(store: WorkerStore, pk: str, rk: str, values: dict[str, Any]) -> None:
    """Merge into the entry (unconditionally: the values are the same however often it runs)."""
    # An entry removed meanwhile has nothing to update.
    with contextlib.suppress(ResourceNotFoundError):
        store.table.update_entity(
            {"PartitionKey": pk, "RowKey": rk, **values}, mode=UpdateMode.MERGE
        )


def drain_once(
    store: WorkerStore,
    *,
    visibility_timeout: int = VISIBILITY_TIMEOUT,
    batch: int = BATCH,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Receive up to ``batch`` messages and process each; returns their outcomes.

    When ``stop`` is set meanwhile, the messages not yet started are made visible again at
    once, for the other instances, instead of after their visibility timeout.
    """
    store.ensure()
    outcomes = []
    received = list(
        store.queue.receive_messages(
            messages_per_page=batch, visibility_timeout=visibility_timeout, max_messages=batch
        )
    )
    for index, message in enumerate(received):
        if stop is not None and stop.is_set():
            for left in received[index:]:
                with contextlib.suppress(AzureError):
                    store.queue.update_message(left, visibility_timeout=0)
            log("worker.released", messages=len(received) - index)
            break
        try:
            outcomes.append(process_message(store, message))
        except Exception as exc:
            # Storage trouble (or a bug): leave the message; it is received again after its
            # visibility timeout, and removed as poison after MAX_DEQUEUE attempts.
            log("thumbnail.retry_later", message=message.id, error=repr(exc)[:300])
    return outcomes


def work(stop: threading.Event, *, store: WorkerStore | None = None) -> None:
    """Process messages until ``stop`` is set; survives storage outages."""
    current = store
    wait = 0.05
    while not stop.is_set():
        try:
            if store is None:
                conn = connection_string()
                if current is None or current.connection_string != conn:
                    current = WorkerStore(conn)
                    log("worker.storage", source=_source, target=describe(conn))
            assert current is not None
            busy = bool(drain_once(current, stop=stop))
            wait = 0.05 if busy else min(IDLE_WAIT_MAX, wait * 2)
        except AzureError as exc:
            log("worker.storage_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
            wait = 2.0
        except Exception as exc:  # a bug must not end the loop silently
            log("worker.error", error=repr(exc)[:300])
            wait = 2.0
        stop.wait(wait)


class Worker(RoleEntryPoint):
    """The role entry point (``python -m cumulo.sdk.run worker:Worker``)."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = threading.Event()

    def on_start(self) -> bool:
        instance = os.environ.get("CUMULO_ROLE_INSTANCE_ID", "local")
        log("worker.started", instance=instance)
        return True

    def run(self) -> None:
        try:
            work(self.stop_requested)
        finally:
            log("worker.stopped")
            self.finished.set()

    def on_stop(self) -> None:
        """Stop taking messages and let the one in hand finish (the process ends after this)."""
        self.stop_requested.set()
        self.finished.wait(STOP_WAIT)


def main() -> int:
    """Outside cumulo: run until SIGTERM or Ctrl-C."""
    worker = Worker()
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop_requested.set())
    if not worker.on_start():
        return 1
    thread = threading.Thread(target=worker.run, name="worker")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
