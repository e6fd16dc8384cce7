"""The queue service: Azure Queue Storage REST operations on SQLite.

Every operation is O(log n) in the queue's depth: messages are found through the index
``(qid, visible, id)`` (the next visible message, oldest first) or ``(qid, msg_id)``; expired
messages are deleted through ``(qid, expires)`` before a read, so they never pile up in a scan.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from typing import Any

import defusedxml.ElementTree as SafeET

from cumulo.storage.azure.auth import Need
from cumulo.storage.azure.common import (
    XML_HEAD,
    check_dns_name,
    int_param,
    meta_from_headers,
    meta_headers,
    meta_xml,
    new_guid,
    rfc1123,
    xml_text,
)
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError, bad_query, invalid_xml, out_of_range
from cumulo.storage.azure.http import Request, Response
from cumulo.storage.azure.service_props import ServiceProperties

MAX_MESSAGE_BYTES = 64 * 1024
MAX_VISIBILITY = 7 * 24 * 3600
NEVER = 253402300799.0  # 9999-12-31T23:59:59Z: what Azure reports for messagettl=-1
DEFAULT_TTL = 7 * 24 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    qid INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    acl TEXT,
    msgs INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    qid INTEGER NOT NULL,
    msg_id TEXT NOT NULL,
    body TEXT NOT NULL,
    inserted REAL NOT NULL,
    expires REAL NOT NULL,
    visible REAL NOT NULL,
    pop TEXT NOT NULL,
    dequeue INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_next ON messages (qid, visible, id);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (qid, expires);
CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages (qid, msg_id);
"""

Route = tuple[Need, Callable[[], Response]]


def _pop_receipt() -> str:
    return base64.b64encode(os.urandom(12)).decode()


def _xml_ok(status: int, body: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        status,
        [("Content-Type", "application/xml"), *(headers or [])],
        (XML_HEAD + body).encode("utf-8"),
    )


# The body the SDKs send, ``<?xml version='1.0' encoding='utf-8'?>\n<QueueMessage><MessageText>
# ...</MessageText></QueueMessage>``, with text that has nothing an XML parser would change or
# refuse but the five predefined entities (no CR, no character references, no control
# characters, no "]]>"): read with one regular expression instead of an XML parser.
_SIMPLE_MESSAGE = re.compile(
    rb"(?:<\?xml version=(['\"])1\.0\1 encoding=(['\"])(?:utf-8|UTF-8)\2\?>)?[ \t\n]*"
    rb"<QueueMessage>[ \t\n]*<MessageText>"
    rb"((?:[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]|&(?:lt|gt|amp|quot|apos);)*)"
    rb"</MessageText>[ \t\n]*</QueueMessage>[ \t\n]*\Z"
)


def parse_message_text(body: bytes) -> str:
    """The MessageText of a ``<QueueMessage>`` body (Azure's error codes on bad input)."""
    if len(body) > MAX_MESSAGE_BYTES + 1024:
        raise StorageError(
            413, "RequestBodyTooLarge", f"The request body is too large ({len(body)} bytes)."
        )
    text = _simple_message_text(body)
    if text is None:
        text = _parsed_message_text(body)
    if len(text) > MAX_MESSAGE_BYTES // 4 and len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise StorageError(
            400,
            "MessageTooLarge",
            f"The message exceeds the maximum allowed size ({len(text.encode('utf-8'))} bytes; "
            f"the limit is {MAX_MESSAGE_BYTES}).",
        )
    return text


def _simple_message_text(body: bytes) -> str | None:
    """The text of a body in the SDKs' plain form, or None to leave it to the XML parser."""
    m = _SIMPLE_MESSAGE.match(body)
    if m is None:
        return None
    raw = m.group(3)
    if b"]]>" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\ufffe" in text or "\uffff" in text:
        return None
    if "&" in text:
        text = (
            text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", '"')
            .replace("&apos;", "'")
            .replace("&amp;", "&")
        )
    return text


def _parsed_message_text(body: bytes) -> str:
    """The MessageText through a (defused) XML parser."""
    try:
        root = SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises several kinds
        raise invalid_xml(str(exc)) from None
    if root.tag != "QueueMessage":
        raise invalid_xml(f"the root element is <{root.tag}>, not <QueueMessage>")
    node = root.find("MessageText")
    if node is None:
        raise invalid_xml("<QueueMessage> has no <MessageText>")
    return node.text or ""


class QueueService:
    name = "queue"

    def __init__(self, db: Database, now: Callable[[], float], props: ServiceProperties) -> None:
        self.db = db
        self.now = now
        self.props = props
        self._qids: dict[tuple[str, str], int] = {}
        """(account, queue name) -> qid of existing queues; dropped when a queue is deleted."""
        with db.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(queues)")}
            if "msgs" not in columns:  # a database from before the message counter
                conn.execute("ALTER TABLE queues ADD COLUMN msgs INTEGER NOT NULL DEFAULT 0")
                conn.execute(
                    "UPDATE queues SET msgs = "
                    "(SELECT count(*) FROM messages WHERE messages.qid = queues.qid)"
                )

    # -- routing -----------------------------------------------------------------------------

    def route(self, req: Request, account: str, parts: list[str]) -> Route:
        m = req.method
        q = req.query
        comp = q.get("comp", "")
        if not parts:
            if comp == "list" and m == "GET":
                return Need("s", "l"), lambda: self.list_queues(req, account)
            if q.get("restype") == "service" and comp in ("properties", "stats"):
                return Need("s", "r" if m == "GET" else "w"), lambda: self.props.handle(
                    req, account, self.name
                )
            raise _unsupported(req)
        name = parts[0]
        if len(parts) == 1:
            if comp == "":
                if m == "PUT":
                    return Need("c", "cw"), lambda: self.create_queue(req, account, name)
                if m == "DELETE":
                    return Need("c", "d"), lambda: self.delete_queue(account, name)
            elif comp == "metadata":
                if m in ("GET", "HEAD"):
                    return Need("c", "r", queue=name), lambda: self.get_properties(account, name)
                if m == "PUT":
                    return Need("c", "w"), lambda: self.set_metadata(req, account, name)
            elif comp == "acl":
                if m in ("GET", "HEAD"):
                    return Need("c", "r"), lambda: self.get_acl(account, name)
                if m == "PUT":
                    return Need("c", "w"), lambda: self.set_acl(req, account, name)
            raise _unsupported(req)
        if parts[1] != "messages" or len(parts) > 3:
            raise _unsupported(req)
        if len(parts) == 2:
            if m == "POST":
                return Need("o", "a", queue=name), lambda: self.put_message(req, account, name)
            if m == "GET":
                if q.get("peekonly", "").lower() == "true":
                    return Need("o", "r", queue=name), lambda: self.peek(req, account, name)
                return Need("o", "p", queue=name), lambda: self.get_messages(req, account, name)
            if m == "DELETE":
                return Need("o", "dp", service_perms="p", queue=name), lambda: self.clear(
                    account, name
                )
            raise _unsupported(req)
        msg_id = parts[2]
        if m == "PUT":
            return Need("o", "u", queue=name), lambda: self.update_message(
                req, account, name, msg_id
            )
        if m == "DELETE":
            return Need("o", "p", queue=name), lambda: self.delete_message(
                req, account, name, msg_id
            )
        raise _unsupported(req)

    def stored_policy(self, account: str, need: Need, identifier: str) -> dict[str, str] | None:
        if need.queue is None:
            return None
        row = self.db.conn.execute(
            "SELECT acl FROM queues WHERE account=? AND name=?", (account, need.queue)
        ).fetchone()
        return policy_from_acl(row[0], identifier) if row else None

    # -- queues --------------------------------------------------------------------------------

    def _qid(self, account: str, name: str) -> int:
        qid = self._qids.get((account, name))
        if qid is not None:
            return qid
        row = self.db.conn.execute(
            "SELECT qid FROM queues WHERE account=? AND name=?", (account, name)
        ).fetchone()
        if row is None:
            check_dns_name("queue", name)
            raise StorageError(404, "QueueNotFound", "The specified queue does not exist.")
        qid = self._qids[(account, name)] = int(row[0])
        return qid

    def create_queue(self, req: Request, account: str, name: str) -> Response:
        check_dns_name("queue", name)
        meta = meta_from_headers(req.headers)
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT metadata FROM queues WHERE account=? AND name=?", (account, name)
            ).fetchone()
            if row is not None:
                if json.loads(row[0]) == meta:
                    return Response(204)
                raise StorageError(
                    409,
                    "QueueAlreadyExists",
                    "The specified queue already exists with different metadata.",
                )
            conn.execute(
                "INSERT INTO queues (account, name, metadata) VALUES (?, ?, ?)",
                (account, name, json.dumps(meta)),
            )
        return Response(201)

    def delete_queue(self, account: str, name: str) -> Response:
        with self.db.write() as conn:
            qid = self._qid(account, name)
            self._qids.pop((account, name), None)
            conn.execute("DELETE FROM messages WHERE qid=?", (qid,))
            conn.execute("DELETE FROM queues WHERE qid=?", (qid,))
        return Response(204)

    def get_properties(self, account: str, name: str) -> Response:
        row = self.db.conn.execute(
            "SELECT qid, metadata FROM queues WHERE account=? AND name=?", (account, name)
        ).fetchone()
        if row is None:
            check_dns_name("queue", name)
            raise StorageError(404, "QueueNotFound", "The specified queue does not exist.")
        with self.db.write():
            self._expire(row[0], self.now())
        (count,) = self.db.conn.execute("SELECT msgs FROM queues WHERE qid=?", (row[0],)).fetchone()
        headers = [("x-ms-approximate-messages-count", str(count))]
        headers += meta_headers(json.loads(row[1]))
        return Response(200, headers)

    def set_metadata(self, req: Request, account: str, name: str) -> Response:
        meta = meta_from_headers(req.headers)
        with self.db.write() as conn:
            qid = self._qid(account, name)
            conn.execute("UPDATE queues SET metadata=? WHERE qid=?", (json.dumps(meta), qid))
        return Response(204)

    def get_acl(self, account: str, name: str) -> Response:
        self._qid(account, name)
        (acl,) = self.db.conn.execute(
            "SELECT acl FROM queues WHERE account=? AND name=?", (account, name)
        ).fetchone()
        return _xml_ok(200, acl or "<SignedIdentifiers />")

    def set_acl(self, req: Request, account: str, name: str) -> Response:
        acl = signed_identifiers(req.body)
        with self.db.write() as conn:
            qid = self._qid(account, name)
            conn.execute("UPDATE queues SET acl=? WHERE qid=?", (acl, qid))
        return Response(204)

    def list_queues(self, req: Request, account: str) -> Response:
        q = req.query
        prefix = q.get("prefix", "")
        marker = q.get("marker", "")
        limit = int_param(q, "maxresults", 5000, 1, 5000)
        with_meta = "metadata" in q.get("include", "")
        rows = self.db.conn.execute(
            "SELECT name, metadata FROM queues WHERE account=? AND name>=? "
            "AND substr(name, 1, ?)=? ORDER BY name LIMIT ?",
            (account, marker, len(prefix), prefix, limit + 1),
        ).fetchall()
        next_marker = rows[limit][0] if len(rows) > limit else ""
        items = []
        for qname, meta in rows[:limit]:
            extra = meta_xml(json.loads(meta)) if with_meta else ""
            items.append(f"<Queue><Name>{xml_text(qname)}</Name>{extra}</Queue>")
        endpoint = f"http://{req.header('host', '127.0.0.1')}/{account}/"
        body = (
            f'<EnumerationResults ServiceEndpoint="{xml_text(endpoint)}">'
            f"<Prefix>{xml_text(prefix)}</Prefix>"
            + (f"<Marker>{xml_text(marker)}</Marker>" if marker else "")
            + f"<MaxResults>{limit}</MaxResults><Queues>{''.join(items)}</Queues>"
            f"<NextMarker>{xml_text(next_marker)}</NextMarker></EnumerationResults>"
        )
        return _xml_ok(200, body)

    # -- messages ------------------------------------------------------------------------------

    def put_message(self, req: Request, account: str, name: str) -> Response:
        q = req.query
        ttl_raw = q.get("messagettl")
        if ttl_raw is None or ttl_raw == "":
            ttl = DEFAULT_TTL
        else:
            try:
                ttl = int(ttl_raw)
            except ValueError:
                raise bad_query("messagettl", ttl_raw, "not an integer") from None
            if ttl == 0 or ttl < -1:
                raise out_of_range("messagettl", ttl_raw, "use -1 or a positive number of seconds")
        vt = int_param(q, "visibilitytimeout", 0, 0, MAX_VISIBILITY)
        if ttl != -1 and vt >= ttl:
            raise out_of_range(
                "visibilitytimeout", str(vt), "it must be less than the message's time to live"
            )
        text = parse_message_text(req.body)
        now = self.now()
        expires = NEVER if ttl == -1 else now + ttl
        msg_id = new_guid()
        pop = _pop_receipt()
        visible = now + vt
        with self.db.write() as conn:
            qid = self._qid(account, name)
            conn.execute(
                "INSERT INTO messages (qid, msg_id, body, inserted, expires, visible, pop) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (qid, msg_id, text, now, expires, visible, pop),
            )
            conn.execute("UPDATE queues SET msgs = msgs + 1 WHERE qid=?", (qid,))
        body = (
            f"<QueueMessagesList><QueueMessage><MessageId>{msg_id}</MessageId>"
            f"<InsertionTime>{rfc1123(now)}</InsertionTime>"
            f"<ExpirationTime>{rfc1123(expires)}</ExpirationTime>"
            f"<PopReceipt>{pop}</PopReceipt>"
            f"<TimeNextVisible>{rfc1123(visible)}</TimeNextVisible>"
            "</QueueMessage></QueueMessagesList>"
        )
        return _xml_ok(201, body)

    def _expire(self, qid: int, now: float) -> None:
        gone = self.db.conn.execute(
            "DELETE FROM messages WHERE qid=? AND expires<=?", (qid, now)
        ).rowcount
        if gone > 0:
            self.db.conn.execute("UPDATE queues SET msgs = msgs - ? WHERE qid=?", (gone, qid))

    def get_messages(self, req: Request, account: str, name: str) -> Response:
        q = req.query
        count = int_param(q, "numofmessages", 1, 1, 32)
        vt = int_param(q, "visibilitytimeout", 30, 1, MAX_VISIBILITY)
        now = self.now()
        visible = now + vt
        out = []
        with self.db.write() as conn:
            qid = self._qid(account, name)
            self._expire(qid, now)
            rows = conn.execute(
                "SELECT id, msg_id, body, inserted, expires, dequeue FROM messages "
                "WHERE qid=? AND visible<=? ORDER BY visible, id LIMIT ?",
                (qid, now, count),
            ).fetchall()
            updates = []
            for row_id, msg_id, text, inserted, expires, dequeue in rows:
                pop = _pop_receipt()
                updates.append((pop, visible, row_id))
                out.append(
                    f"<QueueMessage><MessageId>{msg_id}</MessageId>"
                    f"<InsertionTime>{rfc1123(inserted)}</InsertionTime>"
                    f"<ExpirationTime>{rfc1123(expires)}</ExpirationTime>"
                    f"<PopReceipt>{pop}</PopReceipt>"
                    f"<TimeNextVisible>{rfc1123(visible)}</TimeNextVisible>"
                    f"<DequeueCount>{dequeue + 1}</DequeueCount>"
                    f"<MessageText>{xml_text(text)}</MessageText></QueueMessage>"
                )
            if updates:
                conn.executemany(
                    "UPDATE messages SET pop=?, visible=?, dequeue=dequeue+1 WHERE id=?", updates
                )
        return _xml_ok(200, f"<QueueMessagesList>{''.join(out)}</QueueMessagesList>")

    def peek(self, req: Request, account: str, name: str) -> Response:
        count = int_param(req.query, "numofmessages", 1, 1, 32)
        now = self.now()
        qid = self._qid(account, name)
        with self.db.write():
            self._expire(qid, now)
        rows = self.db.conn.execute(
            "SELECT msg_id, body, inserted, expires, dequeue FROM messages "
            "WHERE qid=? AND visible<=? ORDER BY visible, id LIMIT ?",
            (qid, now, count),
        ).fetchall()
        out = [
            f"<QueueMessage><MessageId>{msg_id}</MessageId>"
            f"<InsertionTime>{rfc1123(inserted)}</InsertionTime>"
            f"<ExpirationTime>{rfc1123(expires)}</ExpirationTime>"
            f"<DequeueCount>{dequeue}</DequeueCount>"
            f"<MessageText>{xml_text(text)}</MessageText></QueueMessage>"
            for msg_id, text, inserted, expires, dequeue in rows
        ]
        return _xml_ok(200, f"<QueueMessagesList>{''.join(out)}</QueueMessagesList>")

    def _find(self, conn: Any, qid: int, msg_id: str, pop: str, now: float) -> int:
        row = conn.execute(
            "SELECT id, pop, expires FROM messages WHERE qid=? AND msg_id=?", (qid, msg_id)
        ).fetchone()
        if row is None or row[2] <= now:
            raise StorageError(404, "MessageNotFound", "The specified message does not exist.")
        if row[1] != pop:
            raise StorageError(
                400,
                "PopReceiptMismatch",
                "The specified pop receipt did not match the pop receipt for a dequeued message.",
            )
        return int(row[0])

    def _pop_param(self, req: Request) -> str:
        pop = req.query.get("popreceipt")
        if not pop:
            raise StorageError(
                400,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified: popreceipt.",
            )
        return pop

    def delete_message(self, req: Request, account: str, name: str, msg_id: str) -> Response:
        pop = self._pop_param(req)
        with self.db.write() as conn:
            qid = self._qid(account, name)
            row_id = self._find(conn, qid, msg_id, pop, self.now())
            conn.execute("DELETE FROM messages WHERE id=?", (row_id,))
            conn.execute("UPDATE queues SET msgs = msgs - 1 WHERE qid=?", (qid,))
        return Response(204)

    def update_message(self, req: Request, account: str, name: str, msg_id: str) -> Response:
        pop = self._pop_param(req)
        if "visibilitytimeout" not in req.query:
            raise StorageError(
                400,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified: "
                "visibilitytimeout.",
            )
        vt = int_param(req.query, "visibilitytimeout", 0, 0, MAX_VISIBILITY)
        text = parse_message_text(req.body) if req.body.strip() else None
        now = self.now()
        new_pop = _pop_receipt()
        visible = now + vt
        with self.db.write() as conn:
            qid = self._qid(account, name)
            row_id = self._find(conn, qid, msg_id, pop, now)
            if text is None:
                conn.execute(
                    "UPDATE messages SET pop=?, visible=? WHERE id=?", (new_pop, visible, row_id)
                )
            else:
                conn.execute(
                    "UPDATE messages SET pop=?, visible=?, body=? WHERE id=?",
                    (new_pop, visible, text, row_id),
                )
        return Response(
            204, [("x-ms-popreceipt", new_pop), ("x-ms-time-next-visible", rfc1123(visible))]
        )

    def clear(self, account: str, name: str) -> Response:
        with self.db.write() as conn:
            qid = self._qid(account, name)
            conn.execute("DELETE FROM messages WHERE qid=?", (qid,))
            conn.execute("UPDATE queues SET msgs = 0 WHERE qid=?", (qid,))
        return Response(204)


def policy_from_acl(acl: str | None, identifier: str) -> dict[str, str] | None:
    """The stored access policy ``identifier`` of an ACL document as {"st", "se", "sp"}."""
    if not acl:
        return None
    try:
        root = SafeET.fromstring(acl)
    except Exception:
        return None
    for node in root.findall("SignedIdentifier"):
        if (node.findtext("Id") or "") == identifier:
            policy = node.find("AccessPolicy")
            if policy is None:
                return {}
            return {
                "st": policy.findtext("Start") or "",
                "se": policy.findtext("Expiry") or "",
                "sp": policy.findtext("Permission") or "",
            }
    return None


def signed_identifiers(body: bytes) -> str:
    """Validate a ``<SignedIdentifiers>`` body and return it as text to store."""
    if not body.strip():
        return "<SignedIdentifiers />"
    try:
        root = SafeET.fromstring(body)
    except Exception as exc:
        raise invalid_xml(str(exc)) from None
    if root.tag != "SignedIdentifiers":
        raise invalid_xml(f"the root element is <{root.tag}>, not <SignedIdentifiers>")
    if len(root) > 5:
        raise StorageError(
            400, "InvalidXmlDocument", "A resource may have at most 5 stored access policies."
        )
    text = body.decode("utf-8", "replace")
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :]
    return text.strip()


def _unsupported(req: Request) -> StorageError:
    return StorageError(
        400,
        "UnsupportedHttpVerb"
        if req.method not in ("GET", "PUT", "POST", "DELETE", "HEAD")
        else "InvalidUri",
        f"The requested URI does not represent any resource on the server: {req.method} "
        f"{req.raw_path}.",
    )
