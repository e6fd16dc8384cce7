"""The blob service: containers, block blobs and append blobs; contents as files.

A blob's content is a list of *extents*, each a file under ``blobs/`` written once and never
changed: Put Blob writes one, each Put Block writes one, Put Block List commits a list of them
(no copying: a 100 MB upload is written exactly once), Append Block adds one. The database
holds names, properties and extent lists; a file is fsynced (with its directory) before the
transaction that references it commits, and files no transaction references any more are
deleted after the commit and swept at start-up (a crash mid-upload leaves no garbage).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET

from cumulo.storage.azure.auth import Need, authenticate
from cumulo.storage.azure.common import (
    XML_HEAD,
    check_dns_name,
    int_param,
    meta_from_headers,
    meta_headers,
    meta_xml,
    parse_rfc1123,
    rfc1123,
    xml_text,
)
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError, bad_header, invalid_xml
from cumulo.storage.azure.http import Request, Response
from cumulo.storage.azure.lease import Lease, check_read, check_write
from cumulo.storage.azure.lease import apply as apply_lease
from cumulo.storage.azure.queue import policy_from_acl, signed_identifiers
from cumulo.storage.azure.service_props import ServiceProperties

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS containers (
        cid INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        etag TEXT NOT NULL,
        modified REAL NOT NULL,
        public TEXT,
        acl TEXT,
        UNIQUE (account, name))""",
    """CREATE TABLE IF NOT EXISTS blobs (
        bid INTEGER PRIMARY KEY,
        cid INTEGER NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        created REAL NOT NULL,
        modified REAL NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        props TEXT NOT NULL DEFAULT '{}',
        extents TEXT NOT NULL DEFAULT '[]',
        lease TEXT NOT NULL DEFAULT '',
        UNIQUE (cid, name))""",
    """CREATE TABLE IF NOT EXISTS blocks (
        cid INTEGER NOT NULL,
        blob TEXT NOT NULL,
        block_id TEXT NOT NULL,
        file TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (cid, blob, block_id))""",
]

# Blob content properties: header on Put Blob / Set Properties -> key -> response header.
_CONTENT_PROPS = (
    ("x-ms-blob-content-type", "type", "Content-Type"),
    ("x-ms-blob-content-encoding", "encoding", "Content-Encoding"),
    ("x-ms-blob-content-language", "language", "Content-Language"),
    ("x-ms-blob-content-md5", "md5", "Content-MD5"),
    ("x-ms-blob-cache-control", "cache", "Cache-Control"),
    ("x-ms-blob-content-disposition", "disposition", "Content-Disposition"),
)
_XML_PROP_NAMES = {
    "type": "Content-Type",
    "encoding": "Content-Encoding",
    "language": "Content-Language",
    "md5": "Content-MD5",
    "cache": "Cache-Control",
    "disposition": "Content-Disposition",
}
MAX_BLOCK_ID_BYTES = 64
MAX_BLOCKS = 50_000

Route = tuple[Need, Callable[[], Response]]


def _ok(status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> Response:
    return Response(status, headers or [], body)


def _xml(body: str) -> Response:
    return Response(200, [("Content-Type", "application/xml")], (XML_HEAD + body).encode("utf-8"))


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end) within ``size``.

    Returns None for an unsatisfiable range; raises for a malformed one.
    """
    text = value.strip()
    if not text.startswith("bytes="):
        raise bad_header("Range", value, "use bytes=START-END")
    spec = text[6:]
    first, sep, last = spec.partition("-")
    if not sep or "," in spec:
        raise bad_header("Range", value, "use bytes=START-END (one range)")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise bad_header("Range", value, "not a number") from None
    if start < 0 or (last and end < start):
        raise bad_header("Range", value, "the end is before the start")
    if start >= size:
        return None
    return start, min(end, size - 1)


def block_list_from_xml(body: bytes) -> list[tuple[str, str]]:
    """A Put Block List body -> [(kind, block id)] with kind Latest/Committed/Uncommitted."""
    try:
        root = SafeET.fromstring(body)
    except Exception as exc:
        raise invalid_xml(str(exc)) from None
    if root.tag != "BlockList":
        raise invalid_xml(f"the root element is <{root.tag}>, not <BlockList>")
    out = []
    for node in root:
        if node.tag not in ("Latest", "Committed", "Uncommitted"):
            raise invalid_xml(f"unexpected element <{node.tag}> in <BlockList>")
        out.append((node.tag, (node.text or "").strip()))
    return out


def check_block_id(block_id: str) -> None:
    try:
        raw = base64.b64decode(block_id, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw or len(raw) > MAX_BLOCK_ID_BYTES:
        raise StorageError(
            400,
            "InvalidQueryParameterValue",
            f"The block id {block_id!r} is not valid base64 of 1-{MAX_BLOCK_ID_BYTES} bytes.",
            [("x-ms-query-parameter-name", "blockid")],
        )


class BlobService:
    name = "blob"

    def __init__(
        self, db: Database, now: Callable[[], float], props: ServiceProperties, root: Path
    ) -> None:
        self.db = db
        self.now = now
        self.props = props
        self.root = root
        self.sync = db.durability != "off"
        self.accounts: Callable[[], dict[str, Any]] | None = None
        """Set by the app: the current account table (to check a copy source's SAS)."""
        root.mkdir(parents=True, exist_ok=True)
        self._last_etag = 0
        with db.write() as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(blobs)")}
            if "lease" not in columns:  # a database from before leases
                conn.execute("ALTER TABLE blobs ADD COLUMN lease TEXT NOT NULL DEFAULT ''")
        self.sweep()

    # -- files -------------------------------------------------------------------------------

    def _body_file(self, req: Request) -> str:
        """Store the request body as a new content file (adopting a spooled one)."""
        if req.body_file is None:
            return self._write_file(req.body)
        name = uuid.uuid4().hex
        sub = self.root / name[:2]
        sub.mkdir(exist_ok=True)
        if self.sync:
            fd = os.open(req.body_file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(req.body_file, sub / name)
        if self.sync:
            self._fsync_dir(sub)
            self._fsync_dir(self.root)
        return name

    def _write_file(self, data: bytes) -> str:
        name = uuid.uuid4().hex
        sub = self.root / name[:2]
        new_dir = not sub.exists()
        sub.mkdir(exist_ok=True)
        path = sub / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.sync:
            self._fsync_dir(sub)
            if new_dir:
                self._fsync_dir(self.root)
        return name

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _unlink(self, names: set[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / name[:2] / name)

    def _read(self, extents: list[list[Any]], start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of a blob made of ``extents``."""
        parts: list[bytes] = []
        offset = 0
        for _block_id, name, size in extents:
            lo, hi = offset, offset + size - 1
            offset += size
            if hi < start or size == 0:
                continue
            if lo > end:
                break
            with open(self.root / name[:2] / name, "rb") as fh:
                fh.seek(max(start, lo) - lo)
                parts.append(fh.read(min(end, hi) - max(start, lo) + 1))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def sweep(self) -> int:
        """Delete content files that no blob or uncommitted block references (crash leftovers)."""
        referenced: set[str] = set()
        for (extents,) in self.db.conn.execute("SELECT extents FROM blobs"):
            referenced.update(e[1] for e in json.loads(extents))
        referenced.update(row[0] for row in self.db.conn.execute("SELECT file FROM blocks"))
        removed = 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                if sub.name.startswith(".incoming-"):
                    sub.unlink(missing_ok=True)
                    removed += 1
                continue
            for path in sub.iterdir():
                if path.name not in referenced:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _etag(self) -> str:
        value = max(self._last_etag + 1, time.time_ns() // 100)
        self._last_etag = value
        return f'"0x{value:X}"'

    # -- routing -----------------------------------------------------------------------------

    def route(self, req: Request, account: str, parts: list[str]) -> Route:
        from urllib.parse import unquote

        m = req.method
        q = req.query
        comp = q.get("comp", "")
        restype = q.get("restype", "")
        if not parts or parts == [""]:
            if comp == "list" and m == "GET":
                return Need("s", "l"), lambda: self.list_containers(req, account)
            if restype == "service" and comp in ("properties", "stats"):
                return Need("s", "r" if m == "GET" else "w"), lambda: self.props.handle(
                    req, account, self.name
                )
            if restype == "account" and comp == "properties":
                return Need("s", "r"), lambda: _ok(
                    200, [("x-ms-sku-name", "Standard_LRS"), ("x-ms-account-kind", "StorageV2")]
                )
            raise _unsupported(req)
        container = unquote(parts[0])
        blob = unquote("/".join(parts[1:])) if len(parts) > 1 else ""
        if not blob:
            if restype != "container":
                raise _unsupported(req)
            c = container
            if comp == "":
                if m == "PUT":
                    return Need("c", "cw"), lambda: self.create_container(req, account, c)
                if m == "DELETE":
                    return Need("c", "d"), lambda: self.delete_container(req, account, c)
                if m in ("GET", "HEAD"):
                    return Need("c", "r", container=c), lambda: self.container_props(account, c)
            elif comp == "metadata" and m == "PUT":
                return Need("c", "w"), lambda: self.set_container_metadata(req, account, c)
            elif comp == "metadata" and m in ("GET", "HEAD"):
                return Need("c", "r", container=c), lambda: self.container_props(account, c)
            elif comp == "acl":
                if m in ("GET", "HEAD"):
                    return Need("c", "r"), lambda: self.get_container_acl(account, c)
                if m == "PUT":
                    return Need("c", "w"), lambda: self.set_container_acl(req, account, c)
            elif comp == "list" and m == "GET":
                anonymous = self._public(account, c) == "container"
                return Need("c", "l", container=c, anonymous=anonymous), lambda: self.list_blobs(
                    req, account, c
                )
            raise _unsupported(req)
        b = blob
        if len(b) > 1024:
            raise StorageError(
                400,
                "InvalidResourceName",
                f"The blob name is {len(b)} characters; the limit is 1024.",
            )
        obj = Need("o", "r", container=container, blob=b)
        if m in ("GET", "HEAD"):
            if comp == "":
                pub = self._public(account, container) in ("blob", "container")
                return Need(
                    "o", "r", container=container, blob=b, anonymous=pub
                ), lambda: self.get_blob(req, account, container, b)
            if comp == "metadata":
                return obj, lambda: self.get_blob(req, account, container, b, head=True)
            if comp == "blocklist":
                return obj, lambda: self.get_block_list(req, account, container, b)
            raise _unsupported(req)
        if m == "PUT":
            write = Need("o", "w", container=container, blob=b)
            if comp == "":
                if "x-ms-copy-source" in req.headers:
                    return Need("o", "cw", container=container, blob=b), lambda: self.copy_blob(
                        req, account, container, b
                    )
                return Need("o", "cw", container=container, blob=b), lambda: self.put_blob(
                    req, account, container, b
                )
            if comp == "block":
                return write, lambda: self.put_block(req, account, container, b)
            if comp == "blocklist":
                return write, lambda: self.put_block_list(req, account, container, b)
            if comp == "appendblock":
                return Need("o", "aw", container=container, blob=b), lambda: self.append_block(
                    req, account, container, b
                )
            if comp == "properties":
                return write, lambda: self.set_blob_properties(req, account, container, b)
            if comp == "lease":
                return write, lambda: self.lease_blob(req, account, container, b)
            if comp == "metadata":
                return write, lambda: self.set_blob_metadata(req, account, container, b)
            raise _unsupported(req)
        if m == "DELETE" and comp == "":
            return Need("o", "d", container=container, blob=b), lambda: self.delete_blob(
                req, account, container, b
            )
        raise _unsupported(req)

    def stored_policy(self, account: str, need: Need, identifier: str) -> dict[str, str] | None:
        if need.container is None:
            return None
        row = self.db.conn.execute(
            "SELECT acl FROM containers WHERE account=? AND name=?", (account, need.container)
        ).fetchone()
        return policy_from_acl(row[0], identifier) if row else None

    # -- containers --------------------------------------------------------------------------

    def _public(self, account: str, name: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT public FROM containers WHERE account=? AND name=?", (account, name)
        ).fetchone()
        return row[0] if row else None

    def _container(self, account: str, name: str) -> tuple[Any, ...]:
        row = self.db.conn.execute(
            "SELECT cid, metadata, etag, modified, public, acl FROM containers "
            "WHERE account=? AND name=?",
            (account, name),
        ).fetchone()
        if row is None:
            check_dns_name("container", name) if name != "$root" else None
            raise StorageError(404, "ContainerNotFound", "The specified container does not exist.")
        return tuple(row)

    def create_container(self, req: Request, account: str, name: str) -> Response:
        if name not in ("$root", "$logs", "$web"):
            check_dns_name("container", name)
        meta = meta_from_headers(req.headers)
        public = req.headers.get("x-ms-blob-public-access") or None
        if public not in (None, "blob", "container"):
            raise bad_header("x-ms-blob-public-access", public, "use blob or container")
        now = self.now()
        etag = self._etag()
        with self.db.write() as conn:
            exists = conn.execute(
                "SELECT 1 FROM containers WHERE account=? AND name=?", (account, name)
            ).fetchone()
            if exists:
                raise StorageError(
                    409, "ContainerAlreadyExists", "The specified container already exists."
                )
            conn.execute(
                "INSERT INTO containers (account, name, metadata, etag, modified, public) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (account, name, json.dumps(meta), etag, now, public),
            )
        return _ok(201, [("ETag", etag), ("Last-Modified", rfc1123(now))])

    def delete_container(self, req: Request, account: str, name: str) -> Response:
        files: set[str] = set()
        with self.db.write() as conn:
            cid, _meta, _etag, modified, _pub, _acl = self._container(account, name)
            _check_time_conditions(req, modified, write=True)
            for (extents,) in conn.execute("SELECT extents FROM blobs WHERE cid=?", (cid,)):
                files.update(e[1] for e in json.loads(extents))
            files.update(r[0] for r in conn.execute("SELECT file FROM blocks WHERE cid=?", (cid,)))
            conn.execute("DELETE FROM blobs WHERE cid=?", (cid,))
            conn.execute("DELETE FROM blocks WHERE cid=?", (cid,))
            conn.execute("DELETE FROM containers WHERE cid=?", (cid,))
        self._unlink(files)
        return _ok(202)

    def _container_headers(self, row: tuple[Any, ...]) -> list[tuple[str, str]]:
        _cid, meta, etag, modified, public, _acl = row
        headers = [
            ("ETag", etag),
            ("Last-Modified", rfc1123(modified)),
            ("x-ms-lease-status", "unlocked"),
            ("x-ms-lease-state", "available"),
            ("x-ms-has-immutability-policy", "false"),
            ("x-ms-has-legal-hold", "false"),
            *meta_headers(json.loads(meta)),
        ]
        if public:
            headers.append(("x-ms-blob-public-access", public))
        return headers

    def container_props(self, account: str, name: str) -> Response:
        return _ok(200, self._container_headers(self._container(account, name)))

    def set_container_metadata(self, req: Request, account: str, name: str) -> Response:
        meta = meta_from_headers(req.headers)
        now = self.now()
        etag = self._etag()
        with self.db.write() as conn:
            cid, _m, _e, modified, _p, _a = self._container(account, name)
            _check_time_conditions(req, modified, write=True)
            conn.execute(
                "UPDATE containers SET metadata=?, etag=?, modified=? WHERE cid=?",
                (json.dumps(meta), etag, now, cid),
            )
        return _ok(200, [("ETag", etag), ("Last-Modified", rfc1123(now))])

    def get_container_acl(self, account: str, name: str) -> Response:
        _cid, _m, etag, modified, public, acl = self._container(account, name)
        response = _xml(acl or "<SignedIdentifiers />")
        response.headers += [("ETag", etag), ("Last-Modified", rfc1123(modified))]
        if public:
            response.headers.append(("x-ms-blob-public-access", public))
        return response

    def set_container_acl(self, req: Request, account: str, name: str) -> Response:
        acl = signed_identifiers(req.body_bytes())
        public = req.headers.get("x-ms-blob-public-access") or None
        if public not in (None, "blob", "container"):
            raise bad_header("x-ms-blob-public-access", public, "use blob or container")
        now = self.now()
        etag = self._etag()
        with self.db.write() as conn:
            cid = self._container(account, name)[0]
            conn.execute(
                "UPDATE containers SET acl=?, public=?, etag=?, modified=? WHERE cid=?",
                (acl, public, etag, now, cid),
            )
        return _ok(200, [("ETag", etag), ("Last-Modified", rfc1123(now))])

    def list_containers(self, req: Request, account: str) -> Response:
        q = req.query
        prefix = q.get("prefix", "")
        marker = q.get("marker", "")
        limit = int_param(q, "maxresults", 5000, 1, 5000)
        with_meta = "metadata" in q.get("include", "")
        rows = self.db.conn.execute(
            "SELECT name, metadata, etag, modified, public FROM containers WHERE account=? "
            "AND name>=? AND substr(name, 1, ?)=? ORDER BY name LIMIT ?",
            (account, marker, len(prefix), prefix, limit + 1),
        ).fetchall()
        next_marker = rows[limit][0] if len(rows) > limit else ""
        items = []
        for name, meta, etag, modified, public in rows[:limit]:
            props = (
                f"<Properties><Last-Modified>{rfc1123(modified)}</Last-Modified>"
                f"<Etag>{xml_text(etag)}</Etag><LeaseStatus>unlocked</LeaseStatus>"
                "<LeaseState>available</LeaseState>"
                + (f"<PublicAccess>{public}</PublicAccess>" if public else "")
                + "<HasImmutabilityPolicy>false</HasImmutabilityPolicy>"
                "<HasLegalHold>false</HasLegalHold></Properties>"
            )
            extra = meta_xml(json.loads(meta)) if with_meta else ""
            items.append(f"<Container><Name>{xml_text(name)}</Name>{props}{extra}</Container>")
        endpoint = f"http://{req.header('host', '127.0.0.1')}/{account}/"
        body = (
            f'<EnumerationResults ServiceEndpoint="{xml_text(endpoint)}">'
            f"<Prefix>{xml_text(prefix)}</Prefix>"
            + (f"<Marker>{xml_text(marker)}</Marker>" if marker else "")
            + f"<MaxResults>{limit}</MaxResults><Containers>{''.join(items)}</Containers>"
            f"<NextMarker>{xml_text(next_marker)}</NextMarker></EnumerationResults>"
        )
        return _xml(body)

    # -- blobs: reading ----------------------------------------------------------------------

    def _blob(self, cid: int, name: str) -> tuple[Any, ...] | None:
        row = self.db.conn.execute(
            "SELECT bid, type, size, etag, created, modified, metadata, props, extents, lease "
            "FROM blobs WHERE cid=? AND name=?",
            (cid, name),
        ).fetchone()
        return tuple(row) if row else None

    def _need_blob(self, account: str, container: str, name: str) -> tuple[int, tuple[Any, ...]]:
        cid = self._container(account, container)[0]
        row = self._blob(cid, name)
        if row is None:
            raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
        return cid, row

    def _blob_headers(self, row: tuple[Any, ...]) -> list[tuple[str, str]]:
        _bid, btype, _size, etag, created, modified, meta, props, extents, lease = row
        p = json.loads(props)
        headers = [
            ("Last-Modified", rfc1123(modified)),
            ("ETag", etag),
            ("x-ms-creation-time", rfc1123(created)),
            ("x-ms-blob-type", btype),
            *load_lease(lease).headers(self.now()),
            ("x-ms-server-encrypted", "true"),
            ("Accept-Ranges", "bytes"),
        ]
        if btype == "AppendBlob":
            headers.append(("x-ms-blob-committed-block-count", str(len(json.loads(extents)))))
        else:
            headers += [("x-ms-access-tier", "Hot"), ("x-ms-access-tier-inferred", "true")]
        headers.append(("Content-Type", p.get("type") or "application/octet-stream"))
        for key, header in _XML_PROP_NAMES.items():
            if key != "type" and p.get(key):
                headers.append((header, p[key]))
        headers += meta_headers(json.loads(meta))
        copy = p.get("copy")
        if copy:
            headers += [
                ("x-ms-copy-id", copy["id"]),
                ("x-ms-copy-status", "success"),
                ("x-ms-copy-source", copy["source"]),
                ("x-ms-copy-progress", f"{copy['size']}/{copy['size']}"),
                ("x-ms-copy-completion-time", rfc1123(copy["done"])),
            ]
        return headers

    def get_blob(
        self, req: Request, account: str, container: str, name: str, head: bool = False
    ) -> Response:
        _cid, row = self._need_blob(account, container, name)
        check_read(load_lease(row[9]), self.now(), req.headers.get("x-ms-lease-id"))
        etag, modified, size = row[3], row[5], row[2]
        not_modified = _check_conditions(req, etag, modified, exists=True, write=False)
        headers = self._blob_headers(row)
        if not_modified:
            return _ok(304, [("ETag", etag), ("Last-Modified", rfc1123(modified))])
        if req.method == "HEAD" or head:
            if head:  # Get Blob Metadata: no content headers
                return _ok(
                    200, [h for h in headers if h[0].startswith(("x-ms-meta-", "ETag", "Last"))]
                )
            return _ok(200, [*headers, ("Content-Length", str(size))])
        range_header = req.headers.get("x-ms-range") or req.headers.get("range")
        if range_header:
            rng = parse_range(range_header, size)
            if rng is None:
                raise StorageError(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                    [("Content-Range", f"bytes */{size}")],
                )
            start, end = rng
            data = self._read(json.loads(row[8]), start, end)
            headers = [h for h in headers if h[0] != "Content-MD5"]
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            if req.headers.get("x-ms-range-get-content-md5", "").lower() == "true":
                if end - start + 1 > 4 * 1024 * 1024:
                    raise StorageError(
                        400,
                        "OutOfRangeInput",
                        "x-ms-range-get-content-md5 is allowed only for ranges up to 4 MiB.",
                    )
                headers.append(
                    ("Content-MD5", base64.b64encode(hashlib.md5(data).digest()).decode())
                )
            p = json.loads(row[7])
            if p.get("md5"):
                headers.append(("x-ms-blob-content-md5", p["md5"]))
            return _ok(206, headers, data)
        data = self._read(json.loads(row[8]), 0, size - 1) if size else b""
        return _ok(200, headers, data)

    def get_block_list(self, req: Request, account: str, container: str, name: str) -> Response:
        kind = req.query.get("blocklisttype", "committed").lower()
        if kind not in ("committed", "uncommitted", "all"):
            raise StorageError(
                400,
                "InvalidQueryParameterValue",
                f"blocklisttype={kind!r} is invalid; use committed, uncommitted or all.",
            )
        cid = self._container(account, container)[0]
        row = self._blob(cid, name)
        uncommitted = self.db.conn.execute(
            "SELECT block_id, size FROM blocks WHERE cid=? AND blob=? ORDER BY rowid", (cid, name)
        ).fetchall()
        if row is None and not uncommitted:
            raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
        parts = ["<BlockList>"]
        if kind in ("committed", "all"):
            blocks = json.loads(row[8]) if row is not None and row[1] == "BlockBlob" else []
            parts.append("<CommittedBlocks>")
            parts += [
                f"<Block><Name>{xml_text(b)}</Name><Size>{s}</Size></Block>"
                for b, _f, s in blocks
                if b
            ]
            parts.append("</CommittedBlocks>")
        if kind in ("uncommitted", "all"):
            parts.append("<UncommittedBlocks>")
            parts += [
                f"<Block><Name>{xml_text(b)}</Name><Size>{s}</Size></Block>" for b, s in uncommitted
            ]
            parts.append("</UncommittedBlocks>")
        parts.append("</BlockList>")
        response = _xml("".join(parts))
        if row is not None:
            response.headers += [
                ("ETag", row[3]),
                ("Last-Modified", rfc1123(row[5])),
                ("x-ms-blob-content-length", str(row[2])),
            ]
        return response

    def list_blobs(self, req: Request, account: str, container: str) -> Response:
        q = req.query
        prefix = q.get("prefix", "")
        marker = q.get("marker", "")
        delimiter = q.get("delimiter", "")
        limit = int_param(q, "maxresults", 5000, 1, 5000)
        include = q.get("include", "")
        cid = self._container(account, container)[0]
        items: list[str] = []
        next_marker = ""
        cursor, inclusive = marker, True
        done = False
        while not done and not next_marker:
            rows = self.db.conn.execute(
                "SELECT name, type, size, etag, created, modified, metadata, props, lease "
                f"FROM blobs WHERE cid=? AND name{'>=' if inclusive else '>'}? "
                "AND substr(name, 1, ?)=? ORDER BY name LIMIT ?",
                (cid, cursor, len(prefix), prefix, limit + 1),
            ).fetchall()
            if not rows:
                break
            done = len(rows) < limit + 1
            for row in rows:
                name = row[0]
                group = None
                if delimiter:
                    cut = name.find(delimiter, len(prefix))
                    if cut >= 0:
                        group = name[: cut + len(delimiter)]
                if len(items) >= limit:
                    next_marker = group or name
                    break
                if group is not None:
                    items.append(f"<BlobPrefix><Name>{xml_text(group)}</Name></BlobPrefix>")
                    cursor, inclusive = group + "\U0010ffff", False
                    done = False
                    break
                items.append(self._blob_item(row, "metadata" in include))
                cursor, inclusive = name, False
        endpoint = f"http://{req.header('host', '127.0.0.1')}/{account}/"
        body = (
            f'<EnumerationResults ServiceEndpoint="{xml_text(endpoint)}" '
            f'ContainerName="{xml_text(container)}">'
            f"<Prefix>{xml_text(prefix)}</Prefix>"
            + (f"<Marker>{xml_text(marker)}</Marker>" if marker else "")
            + f"<MaxResults>{limit}</MaxResults>"
            + (f"<Delimiter>{xml_text(delimiter)}</Delimiter>" if delimiter else "")
            + f"<Blobs>{''.join(items)}</Blobs>"
            f"<NextMarker>{xml_text(next_marker)}</NextMarker></EnumerationResults>"
        )
        return _xml(body)

    def _blob_item(self, row: tuple[Any, ...], with_meta: bool) -> str:
        name, btype, size, etag, created, modified, meta, props, lease_text = row
        p = json.loads(props)
        lease = dict(load_lease(lease_text).headers(self.now()))
        fields = [
            f"<Creation-Time>{rfc1123(created)}</Creation-Time>",
            f"<Last-Modified>{rfc1123(modified)}</Last-Modified>",
            f"<Etag>{xml_text(etag)}</Etag>",
            f"<Content-Length>{size}</Content-Length>",
        ]
        for key, tag in _XML_PROP_NAMES.items():
            value = p.get(key) or ("application/octet-stream" if key == "type" else "")
            fields.append(f"<{tag}>{xml_text(value)}</{tag}>")
        fields.append(f"<BlobType>{btype}</BlobType>")
        if btype == "BlockBlob":
            fields.append(
                "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
            )
        fields.append(
            f"<LeaseStatus>{lease['x-ms-lease-status']}</LeaseStatus>"
            f"<LeaseState>{lease['x-ms-lease-state']}</LeaseState>"
            + (
                f"<LeaseDuration>{lease['x-ms-lease-duration']}</LeaseDuration>"
                if "x-ms-lease-duration" in lease
                else ""
            )
            + "<ServerEncrypted>true</ServerEncrypted>"
        )
        extra = meta_xml(json.loads(meta)) if with_meta else ""
        return (
            f"<Blob><Name>{xml_text(name)}</Name><Properties>{''.join(fields)}</Properties>"
            f"{extra}</Blob>"
        )

    # -- blobs: writing ----------------------------------------------------------------------

    def _content_props(self, req: Request, md5: str | None) -> dict[str, str]:
        props: dict[str, str] = {}
        for header, key, _resp in _CONTENT_PROPS:
            value = req.headers.get(header)
            if value:
                props[key] = value
        if "type" not in props:
            props["type"] = req.headers.get("content-type") or "application/octet-stream"
        if md5 and "md5" not in props:
            props["md5"] = md5
        return props

    @staticmethod
    def _check_md5(req: Request) -> str:
        raw = req.body_md5 if req.body_file else hashlib.md5(req.body).digest()
        digest = base64.b64encode(raw or b"").decode()
        sent = req.headers.get("content-md5")
        if sent and sent != digest:
            raise StorageError(
                400,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value "
                "calculated by the server.",
            )
        return digest

    def _store(
        self,
        req: Request,
        account: str,
        container: str,
        name: str,
        btype: str,
        extents: list[list[Any]],
        size: int,
        props: dict[str, str] | None,
        new_files: set[str],
        use_uncommitted: bool = False,
    ) -> Response:
        """Commit a new version of a blob (conditions checked inside the transaction)."""
        now = self.now()
        etag = self._etag()
        meta = meta_from_headers(req.headers)
        old_files: set[str] = set()
        try:
            with self.db.write() as conn:
                cid = self._container(account, container)[0]
                row = self._blob(cid, name)
                lease_text = row[9] if row is not None else ""
                check_write(load_lease(lease_text), now, req.headers.get("x-ms-lease-id"))
                if row is not None:
                    _check_conditions(req, row[3], row[5], exists=True, write=True)
                    old_files = {e[1] for e in json.loads(row[8])}
                else:
                    _check_conditions(req, None, None, exists=False, write=True)
                if use_uncommitted:
                    extents, size = self._resolve_block_list(conn, cid, name, row, extents)
                    for (f,) in conn.execute(
                        "SELECT file FROM blocks WHERE cid=? AND blob=?", (cid, name)
                    ):
                        old_files.add(f)
                    conn.execute("DELETE FROM blocks WHERE cid=? AND blob=?", (cid, name))
                created = row[4] if row is not None else now
                conn.execute(
                    "INSERT OR REPLACE INTO blobs (cid, name, type, size, etag, created, modified, "
                    "metadata, props, extents, lease) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cid,
                        name,
                        btype,
                        size,
                        etag,
                        created,
                        now,
                        json.dumps(meta),
                        json.dumps(props or {}),
                        json.dumps(extents),
                        lease_text,
                    ),
                )
        except BaseException:
            self._unlink(new_files)
            raise
        still_used = {e[1] for e in extents}
        self._unlink(old_files - still_used)
        headers = [
            ("ETag", etag),
            ("Last-Modified", rfc1123(now)),
            ("x-ms-request-server-encrypted", "true"),
        ]
        if props and props.get("md5") and not use_uncommitted:
            headers.append(("Content-MD5", props["md5"]))
        return _ok(201, headers)

    def put_blob(self, req: Request, account: str, container: str, name: str) -> Response:
        btype = req.headers.get("x-ms-blob-type", "")
        if btype not in ("BlockBlob", "AppendBlob"):
            if btype == "PageBlob":
                raise StorageError(501, "NotImplemented", "Page blobs are not supported by cumulo.")
            raise StorageError(
                400,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: "
                "x-ms-blob-type (BlockBlob or AppendBlob).",
            )
        size = req.body_size
        if btype == "AppendBlob" and size:
            raise StorageError(
                400, "InvalidHeaderValue", "An append blob is created empty (Content-Length: 0)."
            )
        self._container(account, container)  # fail before writing a file
        md5 = self._check_md5(req)
        files: set[str] = set()
        extents: list[list[Any]] = []
        if size:
            file = self._body_file(req)
            files.add(file)
            extents = [["", file, size]]
        props = self._content_props(req, md5 if btype == "BlockBlob" else None)
        return self._store(req, account, container, name, btype, extents, size, props, files)

    def put_block(self, req: Request, account: str, container: str, name: str) -> Response:
        block_id = req.query.get("blockid", "")
        check_block_id(block_id)
        self._check_md5(req)
        cid = self._container(account, container)[0]
        existing = self._blob(cid, name)
        if existing is not None:
            check_write(load_lease(existing[9]), self.now(), req.headers.get("x-ms-lease-id"))
        file = self._body_file(req)
        old: list[str] = []
        try:
            with self.db.write() as conn:
                old = [
                    r[0]
                    for r in conn.execute(
                        "SELECT file FROM blocks WHERE cid=? AND blob=? AND block_id=?",
                        (cid, name, block_id),
                    )
                ]
                conn.execute(
                    "INSERT OR REPLACE INTO blocks (cid, blob, block_id, file, size) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (cid, name, block_id, file, req.body_size),
                )
        except BaseException:
            self._unlink({file})
            raise
        self._unlink(set(old))
        return _ok(201, [("x-ms-request-server-encrypted", "true")])

    def _resolve_block_list(
        self,
        conn: Any,
        cid: int,
        name: str,
        row: tuple[Any, ...] | None,
        wanted: list[list[Any]],
    ) -> tuple[list[list[Any]], int]:
        uncommitted = {
            b: (f, s)
            for b, f, s in conn.execute(
                "SELECT block_id, file, size FROM blocks WHERE cid=? AND blob=?", (cid, name)
            )
        }
        committed: dict[str, tuple[str, int]] = {}
        if row is not None and row[1] == "BlockBlob":
            committed = {b: (f, s) for b, f, s in json.loads(row[8]) if b}
        if len(wanted) > MAX_BLOCKS:
            raise StorageError(
                400, "BlockListTooLong", "The block list may not contain more than 50,000 blocks."
            )
        extents: list[list[Any]] = []
        total = 0
        for kind, block_id in wanted:
            source = None
            if kind in ("Latest", "Uncommitted"):
                source = uncommitted.get(block_id)
            if source is None and kind in ("Latest", "Committed"):
                source = committed.get(block_id)
            if source is None:
                raise StorageError(
                    400,
                    "InvalidBlockList",
                    f"The specified block list is invalid: block {block_id!r} ({kind}) "
                    "does not exist.",
                )
            extents.append([block_id, source[0], source[1]])
            total += source[1]
        return extents, total

    def put_block_list(self, req: Request, account: str, container: str, name: str) -> Response:
        wanted = [[kind, block_id] for kind, block_id in block_list_from_xml(req.body_bytes())]
        props = self._content_props(req, None)
        return self._store(
            req,
            account,
            container,
            name,
            "BlockBlob",
            wanted,
            0,
            props,
            set(),
            use_uncommitted=True,
        )

    def append_block(self, req: Request, account: str, container: str, name: str) -> Response:
        size = req.body_size
        if not size:
            raise StorageError(400, "InvalidHeaderValue", "Append Block needs a non-empty body.")
        md5 = self._check_md5(req)
        cid, _row = self._need_blob(account, container, name)
        file = self._body_file(req)
        now = self.now()
        etag = self._etag()
        try:
            with self.db.write() as conn:
                row = self._blob(cid, name)
                if row is None:
                    raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
                if row[1] != "AppendBlob":
                    raise StorageError(
                        409, "InvalidBlobType", "The blob type is invalid for this operation."
                    )
                check_write(load_lease(row[9]), now, req.headers.get("x-ms-lease-id"))
                _check_conditions(req, row[3], row[5], exists=True, write=True)
                extents = json.loads(row[8])
                if len(extents) >= MAX_BLOCKS:
                    raise StorageError(
                        409,
                        "BlockCountExceedsLimit",
                        "The committed block count cannot exceed 50,000.",
                    )
                offset = row[2]
                max_size = req.headers.get("x-ms-blob-condition-maxsize")
                if max_size and offset + size > int(max_size):
                    raise StorageError(
                        412,
                        "MaxBlobSizeConditionNotMet",
                        "The max blob size condition specified was not met.",
                    )
                want_pos = req.headers.get("x-ms-blob-condition-appendpos")
                if want_pos and int(want_pos) != offset:
                    raise StorageError(
                        412,
                        "AppendPositionConditionNotMet",
                        "The append position condition specified was not met.",
                    )
                extents.append(["", file, size])
                conn.execute(
                    "UPDATE blobs SET size=?, etag=?, modified=?, extents=? WHERE bid=?",
                    (offset + size, etag, now, json.dumps(extents), row[0]),
                )
        except BaseException:
            self._unlink({file})
            raise
        return _ok(
            201,
            [
                ("ETag", etag),
                ("Last-Modified", rfc1123(now)),
                ("Content-MD5", md5),
                ("x-ms-blob-append-offset", str(offset)),
                ("x-ms-blob-committed-block-count", str(len(extents))),
                ("x-ms-request-server-encrypted", "true"),
            ],
        )

    def set_blob_properties(
        self, req: Request, account: str, container: str, name: str
    ) -> Response:
        props: dict[str, str] = {}
        for header, key, _resp in _CONTENT_PROPS:
            value = req.headers.get(header)
            if value:
                props[key] = value
        return self._update(req, account, container, name, "props", json.dumps(props))

    def set_blob_metadata(self, req: Request, account: str, container: str, name: str) -> Response:
        meta = meta_from_headers(req.headers)
        return self._update(req, account, container, name, "metadata", json.dumps(meta))

    def _update(
        self, req: Request, account: str, container: str, name: str, column: str, value: str
    ) -> Response:
        now = self.now()
        etag = self._etag()
        with self.db.write() as conn:
            _cid, row = self._need_blob(account, container, name)
            check_write(load_lease(row[9]), now, req.headers.get("x-ms-lease-id"))
            _check_conditions(req, row[3], row[5], exists=True, write=True)
            conn.execute(
                f"UPDATE blobs SET {column}=?, etag=?, modified=? WHERE bid=?",
                (value, etag, now, row[0]),
            )
        return _ok(200, [("ETag", etag), ("Last-Modified", rfc1123(now))])

    def copy_blob(self, req: Request, account: str, container: str, name: str) -> Response:
        """Copy Blob from this service (synchronous: the copy is done when this answers).

        The source may be in the same account (authorized by the request's own credentials),
        carry a SAS in its URL, or be in a public container; its bytes are copied into new files.
        """
        from urllib.parse import unquote, urlsplit

        source_url = req.headers["x-ms-copy-source"]
        parts = urlsplit(source_url)
        segments = parts.path.lstrip("/").split("/", 2)
        if len(segments) < 3 or not segments[2]:
            raise StorageError(
                400,
                "InvalidHeaderValue",
                f"x-ms-copy-source {source_url!r} is not a blob URL of this service "
                "(http://host:port/account/container/blob).",
            )
        src_account, src_container, src_blob = (unquote(x) for x in segments)
        if src_account != account and not self._public(src_account, src_container):
            self._authorize_copy_source(parts.query, src_account, src_container, src_blob)
        src_cid = self._container(src_account, src_container)[0]
        src = self._blob(src_cid, src_blob)
        if src is None:
            raise StorageError(404, "CannotVerifyCopySource", "The specified blob does not exist.")
        if src[1] != "BlockBlob":
            raise StorageError(409, "InvalidBlobType", "Only block blobs can be copied here.")
        files: set[str] = set()
        extents: list[list[Any]] = []
        try:
            for block_id, file, size in json.loads(src[8]):
                with open(self.root / file[:2] / file, "rb") as fh:
                    copied = self._write_file(fh.read())
                files.add(copied)
                extents.append([block_id, copied, size])
        except BaseException:
            self._unlink(files)
            raise
        props = json.loads(src[7])
        copy_id = str(uuid.uuid4())
        props["copy"] = {"id": copy_id, "source": source_url, "size": src[2], "done": self.now()}
        if not any(h.startswith("x-ms-meta-") for h in req.headers):
            req.headers.update({f"x-ms-meta-{k}": v for k, v in json.loads(src[6]).items()})
        response = self._store(
            req, account, container, name, "BlockBlob", extents, src[2], props, files
        )
        response.status = 202
        response.headers += [("x-ms-copy-id", copy_id), ("x-ms-copy-status", "success")]
        return response

    def _authorize_copy_source(self, query: str, account: str, container: str, blob: str) -> None:
        from cumulo.storage.azure.http import parse_target

        if "sig=" not in query:
            raise StorageError(
                403,
                "CannotVerifyCopySource",
                "The copy source is in another account: give its URL a SAS with read permission.",
            )
        _path, raw, decoded = parse_target("/?" + query)
        probe = Request("GET", "/", f"/{account}/{container}/{blob}", raw, {}, b"", "", decoded)
        accounts = self.accounts() if self.accounts is not None else {}
        source_account = accounts.get(account)
        if source_account is None:
            raise StorageError(404, "CannotVerifyCopySource", "The source account does not exist.")
        try:
            authenticate(
                probe, source_account, "blob", Need("o", "r", container=container, blob=blob)
            )
        except StorageError as exc:
            raise StorageError(403, "CannotVerifyCopySource", exc.message) from None

    def lease_blob(self, req: Request, account: str, container: str, name: str) -> Response:
        now = self.now()
        h = req.headers
        with self.db.write() as conn:
            _cid, row = self._need_blob(account, container, name)
            _check_conditions(req, row[3], row[5], exists=True, write=True)
            new, status, headers = apply_lease(
                load_lease(row[9]),
                h.get("x-ms-lease-action", "").lower(),
                now,
                lease_id=h.get("x-ms-lease-id"),
                proposed_id=h.get("x-ms-proposed-lease-id"),
                duration=h.get("x-ms-lease-duration"),
                break_period=h.get("x-ms-lease-break-period"),
            )
            conn.execute("UPDATE blobs SET lease=? WHERE bid=?", (dump_lease(new), row[0]))
        return _ok(status, [*headers, ("ETag", row[3]), ("Last-Modified", rfc1123(row[5]))])

    def delete_blob(self, req: Request, account: str, container: str, name: str) -> Response:
        with self.db.write() as conn:
            cid, row = self._need_blob(account, container, name)
            check_write(load_lease(row[9]), self.now(), req.headers.get("x-ms-lease-id"))
            _check_conditions(req, row[3], row[5], exists=True, write=True)
            files = {e[1] for e in json.loads(row[8])}
            files.update(
                r[0]
                for r in conn.execute("SELECT file FROM blocks WHERE cid=? AND blob=?", (cid, name))
            )
            conn.execute("DELETE FROM blobs WHERE bid=?", (row[0],))
            conn.execute("DELETE FROM blocks WHERE cid=? AND blob=?", (cid, name))
        self._unlink(files)
        return _ok(202, [("x-ms-delete-type-permanent", "true")])


def load_lease(text: str) -> Lease:
    """A blob row's lease column (JSON, or '' for none) as a Lease."""
    if not text:
        return Lease()
    doc = json.loads(text)
    return Lease(
        doc["id"],
        doc["state"],
        float("inf") if doc["expires"] is None else doc["expires"],
        doc["duration"],
        doc["break_at"],
    )


def dump_lease(lease: Lease) -> str:
    if lease.state == "available":
        return ""
    expires = None if lease.expires == float("inf") else lease.expires
    return json.dumps(
        {
            "id": lease.lease_id,
            "state": lease.state,
            "expires": expires,
            "duration": lease.duration,
            "break_at": lease.break_at,
        }
    )


def _etag_matches(header: str, etag: str | None) -> bool:
    if etag is None:
        return False
    for candidate in header.split(","):
        c = candidate.strip()
        if c == "*" or c == etag or c.strip('"') == etag.strip('"'):
            return True
    return False


def _check_time_conditions(req: Request, modified: float, *, write: bool) -> bool:
    """Apply If-Modified-Since / If-Unmodified-Since; True means 'not modified' for a read."""
    since = req.headers.get("if-modified-since")
    if since:
        when = parse_rfc1123(since)
        if when is not None and int(modified) <= when:
            if write:
                raise _condition_failed()
            return True
    until = req.headers.get("if-unmodified-since")
    if until:
        when = parse_rfc1123(until)
        if when is not None and int(modified) > when:
            raise _condition_failed()
    return False


def _condition_failed() -> StorageError:
    return StorageError(
        412,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
    )


def _check_conditions(
    req: Request, etag: str | None, modified: float | None, *, exists: bool, write: bool
) -> bool:
    """ETag and time conditions. For reads, True means answer 304 Not Modified."""
    if_match = req.headers.get("if-match")
    if if_match and not (exists and _etag_matches(if_match, etag)):
        if not exists and not write:
            raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
        raise _condition_failed()
    if_none = req.headers.get("if-none-match")
    if if_none and exists and _etag_matches(if_none, etag):
        if not write:
            return True
        if if_none.strip() == "*":
            raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
        raise _condition_failed()
    if exists and modified is not None:
        return _check_time_conditions(req, modified, write=write)
    return False


def _unsupported(req: Request) -> StorageError:
    return StorageError(
        400,
        "InvalidUri" if req.method in ("GET", "PUT", "DELETE", "HEAD") else "UnsupportedHttpVerb",
        f"The requested URI does not represent any resource on the server: {req.method} "
        f"{req.raw_path}?{'&'.join(k for k, _ in req.raw_query)}.",
    )
