"""The table service: tables, entities, OData queries and ``$batch`` transactions on SQLite.

Entities are rows keyed ``(tid, PartitionKey, RowKey)`` (a clustered index, so a partition
query or point get is an index range); other properties are a JSON object of
``name -> [Edm type, value]``. Filters are parsed once (``odata.py``) and evaluated per row,
with top-level ``PartitionKey eq``/``RowKey eq`` pushed into SQL. A ``$batch`` change set runs
in one SQLite transaction: all or nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cumulo.storage.azure.auth import Need
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import Request, Response
from cumulo.storage.azure.odata import (
    compile_filter,
    evaluate,
    key_equalities,
    parse_datetime,
    parse_filter,
)
from cumulo.storage.azure.queue import policy_from_acl, signed_identifiers
from cumulo.storage.azure.service_props import ServiceProperties

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS tables (
        tid INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        lname TEXT NOT NULL,
        acl TEXT,
        UNIQUE (account, lname))""",
    """CREATE TABLE IF NOT EXISTS entities (
        tid INTEGER NOT NULL,
        pk TEXT NOT NULL,
        rk TEXT NOT NULL,
        etag TEXT NOT NULL,
        ts TEXT NOT NULL,
        props TEXT NOT NULL,
        PRIMARY KEY (tid, pk, rk)) WITHOUT ROWID""",
]

JSON_TYPE = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
MAX_TOP = 1000
SCAN_LIMIT = 20_000
MAX_PROPERTIES = 252
MAX_ENTITY_BYTES = 1024 * 1024
MAX_STRING_CHARS = 32 * 1024
MAX_BATCH = 100
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_PROP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_ENTITY_PATH = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\((.*)\))?$", re.DOTALL)
_KEYS = re.compile(
    r"^\s*PartitionKey\s*=\s*'((?:[^']|'')*)'\s*,\s*RowKey\s*=\s*'((?:[^']|'')*)'\s*$", re.DOTALL
)
_TABLES_PATH = re.compile(r"^Tables(?:\('((?:[^']|'')*)'\))?$")

Route = tuple[Need, Callable[[], Response]]
Props = dict[str, list[Any]]


def invalid_input(message: str) -> StorageError:
    return StorageError(400, "InvalidInput", message)


def check_table_name(name: str) -> None:
    if not _TABLE_NAME.match(name) or name.lower() == "tables":
        raise StorageError(
            400,
            "InvalidResourceName",
            f"The table name {name!r} is invalid: use 3-63 letters and digits, starting with a "
            "letter ('tables' is reserved).",
        )


def check_key(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_input(f"The {kind} must be a string, not {type(value).__name__}.")
    if len(value.encode("utf-16-le")) > 2048:
        raise StorageError(400, "KeyValueTooLarge", f"The {kind} is longer than 1 KiB.")
    if _BAD_KEY.search(value):
        raise StorageError(
            400,
            "InvalidInput",
            f"The {kind} {value!r} contains a character not allowed in keys "
            "('/', '\\', '#', '?' or a control character).",
        )
    return value


def format_datetime(moment: Any) -> str:
    text: str = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}0"
    return text + "Z"


def convert_property(name: str, edm: str | None, value: Any) -> list[Any] | None:
    """A JSON property (with its optional @odata.type) -> [Edm type, stored value]."""
    if value is None:
        return None
    try:
        if edm is None:
            if isinstance(value, bool):
                return ["Edm.Boolean", value]
            if isinstance(value, int):
                if -(2**31) <= value < 2**31:
                    return ["Edm.Int32", value]
                return ["Edm.Int64", value]
            if isinstance(value, float):
                return ["Edm.Double", value]
            if isinstance(value, str):
                edm = "Edm.String"
            else:
                raise ValueError(f"a {type(value).__name__} is not a property value")
        if edm == "Edm.String":
            if not isinstance(value, str):
                raise ValueError("not a string")
            if len(value) > MAX_STRING_CHARS:
                raise StorageError(
                    400, "PropertyValueTooLarge", f"The value of property {name!r} exceeds 64 KiB."
                )
            return [edm, value]
        if edm == "Edm.Int32":
            number = int(value)
            if not -(2**31) <= number < 2**31 or isinstance(value, (bool, float)):
                raise ValueError("out of the Int32 range")
            return [edm, number]
        if edm == "Edm.Int64":
            if isinstance(value, (bool, float)):
                raise ValueError("not an integer")
            number = int(value)
            if not -(2**63) <= number < 2**63:
                raise ValueError("out of the Int64 range")
            return [edm, number]
        if edm == "Edm.Double":
            if isinstance(value, bool):
                raise ValueError("not a number")
            if isinstance(value, str) and value not in (
                "NaN",
                "Infinity",
                "-Infinity",
                "INF",
                "-INF",
            ):
                return [edm, float(value)]
            return [
                edm,
                float(value.replace("INF", "Infinity")) if isinstance(value, str) else float(value),
            ]
        if edm == "Edm.Boolean":
            if not isinstance(value, bool):
                raise ValueError("not true or false")
            return [edm, value]
        if edm == "Edm.DateTime":
            return [edm, format_datetime(parse_datetime(str(value)))]
        if edm == "Edm.Guid":
            return [edm, str(uuid.UUID(str(value)))]
        if edm == "Edm.Binary":
            raw = base64.b64decode(str(value), validate=True)
            if len(raw) > 64 * 1024:
                raise StorageError(
                    400, "PropertyValueTooLarge", f"The value of property {name!r} exceeds 64 KiB."
                )
            return [edm, base64.b64encode(raw).decode()]
    except StorageError:
        raise
    except (ValueError, TypeError, binascii.Error, AttributeError) as exc:
        raise invalid_input(
            f"The value {value!r} of property {name!r} is not a valid {edm}: {exc}."
        ) from None
    raise invalid_input(f"The type {edm!r} of property {name!r} is not supported.")


def parse_entity(body: bytes) -> tuple[Any, Any, Props]:
    """An entity body -> (PartitionKey or None, RowKey or None, properties)."""
    if len(body) > MAX_ENTITY_BYTES + 64 * 1024:
        raise StorageError(413, "EntityTooLarge", "The entity is larger than 1 MiB.")
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_input(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise invalid_input("The request body must be a JSON object (an entity).")
    types = {k[:-11]: v for k, v in doc.items() if k.endswith("@odata.type")}
    props: Props = {}
    for name, value in doc.items():
        if name.endswith("@odata.type") or name.startswith("odata."):
            continue
        if name in ("PartitionKey", "RowKey", "Timestamp"):
            continue
        if not _PROP_NAME.match(name):
            raise StorageError(
                400, "PropertyNameInvalid", f"The property name {name!r} is invalid."
            )
        edm = types.get(name)
        if edm is not None and not isinstance(edm, str):
            raise invalid_input(f"The type of property {name!r} must be a string.")
        converted = convert_property(name, edm, value)
        if converted is not None:
            props[name] = converted
    if len(props) > MAX_PROPERTIES:
        raise StorageError(
            400, "TooManyProperties", f"The entity has {len(props)} properties; the limit is 252."
        )
    return doc.get("PartitionKey"), doc.get("RowKey"), props


def wire_property(name: str, edm: str, value: Any, out: dict[str, Any], level: str) -> None:
    if edm == "Edm.Double":
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    elif edm == "Edm.Int64":
        value = str(value)
    if level != "none" and (
        edm not in ("Edm.String", "Edm.Int32", "Edm.Boolean") or level == "full"
    ):
        out[f"{name}@odata.type"] = edm
    out[name] = value


def _etag_for(ts: str) -> str:
    return "W/\"datetime'" + quote(ts, safe="") + "'\""


def _metadata_level(req: Request) -> str:
    accept = (req.query.get("$format") or req.headers.get("accept", "")).lower()
    if "nometadata" in accept:
        return "none"
    if "fullmetadata" in accept:
        return "full"
    return "minimal"


class _Op:
    """One parsed operation of a $batch change set."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


def parse_batch(body: bytes, content_type: str) -> list[_Op]:
    """Split a ``multipart/mixed`` $batch body into its change set's operations."""

    def boundary_of(ctype: str) -> str:
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not m:
            raise invalid_input(f"The Content-Type {ctype!r} has no multipart boundary.")
        return m.group(1)

    def parts(data: bytes, boundary: str) -> list[bytes]:
        delim = b"--" + boundary.encode()
        chunks = data.split(delim)
        if len(chunks) < 3:
            raise invalid_input("The batch body has no parts.")
        out = []
        for chunk in chunks[1:]:
            if chunk.startswith(b"--"):
                break
            out.append(chunk.strip(b"\r\n"))
        return out

    def split_head(part: bytes) -> tuple[dict[str, str], bytes]:
        head, sep, rest = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, rest = part.partition(b"\n\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return headers, rest

    ops: list[_Op] = []
    for part in parts(body, boundary_of(content_type)):
        headers, rest = split_head(part)
        ctype = headers.get("content-type", "")
        inner_parts = (
            parts(rest, boundary_of(ctype)) if ctype.startswith("multipart/mixed") else [part]
        )
        for inner in inner_parts:
            _h, http_text = (
                split_head(inner)
                if not inner.lstrip().startswith(
                    (b"POST", b"PUT", b"GET", b"PATCH", b"MERGE", b"DELETE")
                )
                else ({}, inner)
            )
            line_end = http_text.find(b"\n")
            request_line = http_text[:line_end].decode("utf-8", "replace").strip()
            fields = request_line.split(" ")
            if len(fields) < 2:
                raise invalid_input(f"Bad request line in batch: {request_line[:80]!r}.")
            op_headers, op_body = split_head(http_text[line_end + 1 :])
            if "content-length" in op_headers:
                try:
                    op_body = op_body[: int(op_headers["content-length"])]
                except ValueError:
                    raise invalid_input("Bad Content-Length in a batch operation.") from None
            ops.append(
                _Op(
                    fields[0].upper(), urlsplit(fields[1]).path, op_headers, op_body.rstrip(b"\r\n")
                )
            )
    return ops


class TableService:
    name = "table"

    def __init__(self, db: Database, now: Callable[[], float], props: ServiceProperties) -> None:
        self.db = db
        self.now = now
        self.props = props
        self._last_tick = 0
        with db.write() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def _timestamp(self) -> str:
        tick = max(self._last_tick + 1, time.time_ns() // 100)
        self._last_tick = tick
        seconds, frac = divmod(tick, 10_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:07d}Z"

    # -- routing -------------------------------------------------------------------------------

    def route(self, req: Request, account: str, parts: list[str]) -> Route:
        m = req.method
        q = req.query
        if not parts:
            if q.get("restype") == "service" and q.get("comp") in ("properties", "stats"):
                return Need("s", "r" if m == "GET" else "w"), lambda: self.props.handle(
                    req, account, self.name
                )
            raise _unsupported(req)
        if len(parts) != 1:
            raise _unsupported(req)
        segment = parts[0]
        if segment == "$batch" and m == "POST":
            return self._route_batch(req, account)
        tables = _TABLES_PATH.match(segment)
        if tables:
            name = tables.group(1)
            if name is None:
                if m == "GET":
                    return Need("c", "lr"), lambda: self.query_tables(req, account)
                if m == "POST":
                    return Need("c", "ca"), lambda: self.create_table(req, account)
            else:
                name = name.replace("''", "'")
                if m == "DELETE":
                    return Need("c", "d"), lambda: self.delete_table(account, name)
                if m == "GET":
                    return Need("c", "lr"), lambda: self.get_table(req, account, name)
            raise _unsupported(req)
        match = _ENTITY_PATH.match(segment)
        if not match:
            raise _unsupported(req)
        table, inside = match.group(1), match.group(2)
        if q.get("comp") == "acl" and inside is None:
            if m in ("GET", "HEAD"):
                return Need("c", "r"), lambda: self.get_acl(account, table)
            if m == "PUT":
                return Need("c", "w"), lambda: self.set_acl(req, account, table)
            raise _unsupported(req)
        keys = None
        if inside:
            km = _KEYS.match(inside)
            if not km:
                raise invalid_input(
                    f"The entity address {segment!r} is not (PartitionKey='…',RowKey='…')."
                )
            keys = (km.group(1).replace("''", "'"), km.group(2).replace("''", "'"))
        return self._route_entity(req, account, table, keys)

    def _route_entity(
        self, req: Request, account: str, table: str, keys: tuple[str, str] | None
    ) -> Route:
        m = req.method
        if m == "GET":
            if keys is None:
                return Need("o", "r", table=table), lambda: self.query_entities(req, account, table)
            return Need(
                "o", "r", table=table
            ), lambda: self._checked(req, keys) or (self.get_entity(req, account, table, keys))
        if m == "POST" and keys is None:
            return Need("o", "a", table=table), lambda: self.insert(req, account, table)
        if keys is None:
            raise _unsupported(req)
        if m in ("PUT", "PATCH", "MERGE"):
            merge = m != "PUT"
            if req.headers.get("if-match"):
                need = Need("o", "u", table=table)
            else:
                need = Need("o", "a", all_perms="au", table=table)
            return (
                need,
                lambda: (
                    self._checked(req, keys)
                    or self.write_entity(
                        account, table, keys, req.body, req.headers.get("if-match"), merge
                    )
                ),
            )
        if m == "DELETE":
            return (
                Need("o", "d", table=table),
                lambda: (
                    self._checked(req, keys)
                    or (self.delete_entity(account, table, keys, req.headers.get("if-match")))
                ),
            )
        raise _unsupported(req)

    def stored_policy(self, account: str, need: Need, identifier: str) -> dict[str, str] | None:
        if need.table is None:
            return None
        row = self.db.conn.execute(
            "SELECT acl FROM tables WHERE account=? AND lname=?", (account, need.table.lower())
        ).fetchone()
        return policy_from_acl(row[0], identifier) if row else None

    @staticmethod
    def _checked(req: Request, keys: tuple[str, str]) -> None:
        check_key_range(req.key_range, *keys)

    # -- tables --------------------------------------------------------------------------------

    def _tid(self, account: str, table: str) -> int:
        row = self.db.conn.execute(
            "SELECT tid FROM tables WHERE account=? AND lname=?", (account, table.lower())
        ).fetchone()
        if row is None:
            raise StorageError(
                404, "TableNotFound", f"The table specified does not exist: {table!r}."
            )
        return int(row[0])

    def create_table(self, req: Request, account: str) -> Response:
        try:
            doc = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid_input(f"The request body is not valid JSON: {exc}.") from None
        name = doc.get("TableName") if isinstance(doc, dict) else None
        if not isinstance(name, str):
            raise invalid_input("The request body needs a TableName string.")
        check_table_name(name)
        with self.db.write() as conn:
            exists = conn.execute(
                "SELECT 1 FROM tables WHERE account=? AND lname=?", (account, name.lower())
            ).fetchone()
            if exists:
                raise StorageError(409, "TableAlreadyExists", "The table specified already exists.")
            conn.execute(
                "INSERT INTO tables (account, name, lname) VALUES (?, ?, ?)",
                (account, name, name.lower()),
            )
        base = f"http://{req.header('host', '127.0.0.1')}/{account}"
        if "return-no-content" in req.headers.get("prefer", ""):
            return Response(
                204,
                [
                    ("Preference-Applied", "return-no-content"),
                    ("Location", f"{base}/Tables('{name}')"),
                ],
            )
        doc = {"TableName": name}
        if _metadata_level(req) != "none":
            doc = {"odata.metadata": f"{base}/$metadata#Tables/@Element", **doc}
        return _json(201, doc, [("Preference-Applied", "return-content")])

    def delete_table(self, account: str, name: str) -> Response:
        with self.db.write() as conn:
            tid = self._tid(account, name)
            conn.execute("DELETE FROM entities WHERE tid=?", (tid,))
            conn.execute("DELETE FROM tables WHERE tid=?", (tid,))
        return Response(204)

    def get_table(self, req: Request, account: str, name: str) -> Response:
        self._tid(account, name)
        (real,) = self.db.conn.execute(
            "SELECT name FROM tables WHERE account=? AND lname=?", (account, name.lower())
        ).fetchone()
        return _json(200, {"TableName": real})

    def query_tables(self, req: Request, account: str) -> Response:
        q = req.query
        node = parse_filter(q["$filter"]) if q.get("$filter") else None
        top = _top(q)
        start = q.get("NextTableName", "")
        rows = self.db.conn.execute(
            "SELECT name, lname FROM tables WHERE account=? AND lname>=? ORDER BY lname",
            (account, start.lower()),
        ).fetchall()
        out: list[dict[str, str]] = []
        next_name = None
        for name, _lname in rows:
            if node is not None and not evaluate(node, {"TableName": ("Edm.String", name)}):
                continue
            if len(out) >= top:
                next_name = name
                break
            out.append({"TableName": name})
        base = f"http://{req.header('host', '127.0.0.1')}/{account}"
        doc: dict[str, Any] = {"value": out}
        if _metadata_level(req) != "none":
            doc = {"odata.metadata": f"{base}/$metadata#Tables", **doc}
        headers = [("x-ms-continuation-NextTableName", next_name)] if next_name else []
        return _json(200, doc, headers)

    def get_acl(self, account: str, table: str) -> Response:
        tid = self._tid(account, table)
        (acl,) = self.db.conn.execute("SELECT acl FROM tables WHERE tid=?", (tid,)).fetchone()
        body = '<?xml version="1.0" encoding="utf-8"?>' + (acl or "<SignedIdentifiers />")
        return Response(200, [("Content-Type", "application/xml")], body.encode())

    def set_acl(self, req: Request, account: str, table: str) -> Response:
        acl = signed_identifiers(req.body)
        with self.db.write() as conn:
            tid = self._tid(account, table)
            conn.execute("UPDATE tables SET acl=? WHERE tid=?", (acl, tid))
        return Response(204)

    # -- entities ------------------------------------------------------------------------------

    def _entity_doc(
        self,
        pk: str,
        rk: str,
        etag: str,
        ts: str,
        props: Props,
        level: str,
        select: list[str] | None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if level != "none":
            doc["odata.etag"] = etag
        system = {"PartitionKey": pk, "RowKey": rk}
        for key, value in system.items():
            if select is None or key in select:
                doc[key] = value
        if select is None or "Timestamp" in select:
            if level != "none":
                doc["Timestamp@odata.type"] = "Edm.DateTime"
            doc["Timestamp"] = ts
        for name, (edm, value) in props.items():
            if select is None or name in select:
                wire_property(name, edm, value, doc, level)
        return doc

    def insert(self, req: Request, account: str, table: str) -> Response:
        pk, rk, props = parse_entity(req.body)
        if pk is None or rk is None:
            raise invalid_input("An inserted entity needs PartitionKey and RowKey.")
        check_key("PartitionKey", pk)
        check_key("RowKey", rk)
        check_key_range(req.key_range, pk, rk)
        ts = self._timestamp()
        etag = _etag_for(ts)
        with self.db.write() as conn:
            tid = self._tid(account, table)
            exists = conn.execute(
                "SELECT 1 FROM entities WHERE tid=? AND pk=? AND rk=?", (tid, pk, rk)
            ).fetchone()
            if exists:
                raise StorageError(
                    409, "EntityAlreadyExists", "The specified entity already exists."
                )
            conn.execute(
                "INSERT INTO entities (tid, pk, rk, etag, ts, props) VALUES (?, ?, ?, ?, ?, ?)",
                (tid, pk, rk, etag, ts, json.dumps(props)),
            )
        headers = [("ETag", etag)]
        if "return-no-content" in req.headers.get("prefer", ""):
            return Response(204, [*headers, ("Preference-Applied", "return-no-content")])
        level = _metadata_level(req)
        doc = self._entity_doc(pk, rk, etag, ts, props, level, None)
        if level != "none":
            base = f"http://{req.header('host', '127.0.0.1')}/{account}"
            doc = {"odata.metadata": f"{base}/$metadata#{table}/@Element", **doc}
        return _json(201, doc, [*headers, ("Preference-Applied", "return-content")])

    def write_entity(
        self,
        account: str,
        table: str,
        keys: tuple[str, str],
        body: bytes,
        if_match: str | None,
        merge: bool,
    ) -> Response:
        pk, rk = keys
        check_key("PartitionKey", pk)
        check_key("RowKey", rk)
        body_pk, body_rk, props = parse_entity(body)
        if (body_pk is not None and body_pk != pk) or (body_rk is not None and body_rk != rk):
            raise invalid_input("The keys in the body differ from the keys in the URL.")
        ts = self._timestamp()
        etag = _etag_for(ts)
        with self.db.write() as conn:
            tid = self._tid(account, table)
            row = conn.execute(
                "SELECT etag, props FROM entities WHERE tid=? AND pk=? AND rk=?", (tid, pk, rk)
            ).fetchone()
            if if_match:
                if row is None:
                    raise StorageError(
                        404, "ResourceNotFound", "The specified resource does not exist."
                    )
                if if_match.strip() != "*" and if_match.strip() != row[0]:
                    raise StorageError(
                        412,
                        "UpdateConditionNotSatisfied",
                        "The update condition specified in the request was not satisfied.",
                    )
            if merge and row is not None:
                merged = json.loads(row[1])
                merged.update(props)
                props = merged
                if len(props) > MAX_PROPERTIES:
                    raise StorageError(
                        400, "TooManyProperties", "The merged entity has more than 252 properties."
                    )
            conn.execute(
                "INSERT OR REPLACE INTO entities (tid, pk, rk, etag, ts, props) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (tid, pk, rk, etag, ts, json.dumps(props)),
            )
        return Response(204, [("ETag", etag)])

    def delete_entity(
        self, account: str, table: str, keys: tuple[str, str], if_match: str | None
    ) -> Response:
        pk, rk = keys
        if not if_match:
            raise StorageError(
                400,
                "MissingRequiredHeader",
                "Delete Entity needs an If-Match header ('*' for any).",
            )
        with self.db.write() as conn:
            tid = self._tid(account, table)
            row = conn.execute(
                "SELECT etag FROM entities WHERE tid=? AND pk=? AND rk=?", (tid, pk, rk)
            ).fetchone()
            if row is None:
                raise StorageError(
                    404, "ResourceNotFound", "The specified resource does not exist."
                )
            if if_match.strip() != "*" and if_match.strip() != row[0]:
                raise StorageError(
                    412,
                    "UpdateConditionNotSatisfied",
                    "The update condition specified in the request was not satisfied.",
                )
            conn.execute("DELETE FROM entities WHERE tid=? AND pk=? AND rk=?", (tid, pk, rk))
        return Response(204)

    def get_entity(self, req: Request, account: str, table: str, keys: tuple[str, str]) -> Response:
        tid = self._tid(account, table)
        row = self.db.conn.execute(
            "SELECT etag, ts, props FROM entities WHERE tid=? AND pk=? AND rk=?", (tid, *keys)
        ).fetchone()
        if row is None:
            raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
        level = _metadata_level(req)
        select = _select(req.query)
        doc = self._entity_doc(keys[0], keys[1], row[0], row[1], json.loads(row[2]), level, select)
        if level != "none":
            base = f"http://{req.header('host', '127.0.0.1')}/{account}"
            doc = {"odata.metadata": f"{base}/$metadata#{table}/@Element", **doc}
        return _json(200, doc, [("ETag", row[0])])

    def query_entities(self, req: Request, account: str, table: str) -> Response:
        q = req.query
        node = parse_filter(q["$filter"]) if q.get("$filter") else None
        matches = compile_filter(node) if node is not None else None
        top = _top(q)
        select = _select(q)
        level = _metadata_level(req)
        tid = self._tid(account, table)
        eq = key_equalities(node) if node is not None else {}
        where = "tid=?"
        args: list[Any] = [tid]
        if "PartitionKey" in eq:
            where += " AND pk=?"
            args.append(eq["PartitionKey"])
        if "RowKey" in eq:
            where += " AND rk=?"
            args.append(eq["RowKey"])
        cursor: tuple[str, str] | None = None
        npk = q.get("NextPartitionKey")
        if npk is not None:
            cursor = (npk, q.get("NextRowKey", ""))
        out: list[dict[str, Any]] = []
        next_keys: tuple[str, str] | None = None
        scanned = 0
        inclusive = True
        while next_keys is None:
            sql = f"SELECT pk, rk, etag, ts, props FROM entities WHERE {where}"
            extra: list[Any] = []
            if cursor is not None:
                op = ">=" if inclusive else ">"
                sql += f" AND (pk > ? OR (pk = ? AND rk {op} ?))"
                extra = [cursor[0], cursor[0], cursor[1]]
            sql += " ORDER BY pk, rk LIMIT 500"
            rows = self.db.conn.execute(sql, (*args, *extra)).fetchall()
            if not rows:
                break
            for pk, rk, etag, ts, props_text in rows:
                if len(out) >= top or scanned >= SCAN_LIMIT:
                    next_keys = (pk, rk)
                    break
                scanned += 1
                if not in_key_range(req.key_range, pk, rk):
                    continue
                props = json.loads(props_text)
                if matches is not None:
                    view = dict(props)
                    view["PartitionKey"] = ("Edm.String", pk)
                    view["RowKey"] = ("Edm.String", rk)
                    view["Timestamp"] = ("Edm.DateTime", ts)
                    if not matches(view):
                        continue
                out.append(self._entity_doc(pk, rk, etag, ts, props, level, select))
            cursor, inclusive = (rows[-1][0], rows[-1][1]), False
            if len(rows) < 500:
                break
        doc: dict[str, Any] = {"value": out}
        if level != "none":
            base = f"http://{req.header('host', '127.0.0.1')}/{account}"
            doc = {"odata.metadata": f"{base}/$metadata#{table}", **doc}
        headers = []
        if next_keys is not None:
            headers = [
                ("x-ms-continuation-NextPartitionKey", next_keys[0]),
                ("x-ms-continuation-NextRowKey", next_keys[1]),
            ]
        return _json(200, doc, headers)

    # -- $batch --------------------------------------------------------------------------------

    def _route_batch(self, req: Request, account: str) -> Route:
        ops = parse_batch(req.body, req.headers.get("content-type", ""))
        if not ops:
            raise invalid_input("The batch has no operations.")
        parsed = []
        for op in ops:
            prefix = f"/{account}/"
            path = op.path[len(prefix) :] if op.path.startswith(prefix) else op.path.lstrip("/")
            segment = unquote(path)
            match = _ENTITY_PATH.match(segment)
            if not match:
                raise invalid_input(
                    f"The batch operation path {op.path!r} is not an entity address."
                )
            table, inside = match.group(1), match.group(2)
            keys = None
            if inside:
                km = _KEYS.match(inside)
                if not km:
                    raise invalid_input(f"The batch operation path {op.path!r} has bad keys.")
                keys = (km.group(1).replace("''", "'"), km.group(2).replace("''", "'"))
            parsed.append((op, table, keys))
        tables = {t.lower() for _op, t, _k in parsed}
        if len(tables) != 1:
            raise invalid_input("All operations of a batch must use the same table.")
        letters = ""
        for op, _t, _k in parsed:
            if op.method == "POST":
                letters += "a"
            elif op.method == "DELETE":
                letters += "d"
            elif op.method == "GET":
                letters += "r"
            elif op.headers.get("if-match"):
                letters += "u"
            else:
                letters += "au"
        need = Need("o", "raud", all_perms="".join(sorted(set(letters))), table=parsed[0][1])
        return need, lambda: self.batch(req, account, parsed)

    def batch(self, req: Request, account: str, parsed: list[tuple[_Op, str, Any]]) -> Response:
        results: list[Response] = []
        failure: tuple[int, StorageError] | None = None
        if len(parsed) > MAX_BATCH:
            failure = (0, invalid_input(f"A batch may hold at most {MAX_BATCH} operations."))
        else:
            partitions = set()
            seen = set()
            for index, (op, _table, keys) in enumerate(parsed):
                pk = keys[0] if keys else None
                if op.method == "POST":
                    try:
                        pk, rk, _props = parse_entity(op.body)
                    except StorageError as exc:
                        failure = (index, exc)
                        break
                    keys = (pk, rk)
                partitions.add(pk)
                if keys in seen:
                    failure = (
                        index,
                        StorageError(
                            400,
                            "InvalidDuplicateRow",
                            "The batch request contains multiple changes with the same row key.",
                        ),
                    )
                    break
                seen.add(keys)
            if failure is None and len(partitions) > 1:
                failure = (
                    0,
                    StorageError(
                        400,
                        "CommandsInBatchActOnDifferentPartitions",
                        "All commands in a batch must operate on the same partition.",
                    ),
                )
        if failure is None:
            index = 0
            try:
                with self.db.write():
                    for index, (op, table, keys) in enumerate(parsed):  # noqa: B007
                        results.append(self._run_op(req, account, op, table, keys))
            except StorageError as exc:
                failure = (index, exc)
                results = []
        return self._batch_response(failure, results)

    def _run_op(self, req: Request, account: str, op: _Op, table: str, keys: Any) -> Response:
        if keys is not None:
            check_key_range(req.key_range, *keys)
        inner = Request(
            method=op.method,
            target=op.path,
            raw_path=op.path,
            raw_query=[],
            headers={**op.headers, "host": req.header("host", "127.0.0.1")},
            body=op.body,
            key_range=req.key_range,
        )
        if op.method == "POST" and keys is None:
            return self.insert(inner, account, table)
        if keys is None:
            raise invalid_input(f"The batch operation {op.method} needs an entity address.")
        if op.method in ("PUT", "PATCH", "MERGE"):
            return self.write_entity(
                account, table, keys, op.body, op.headers.get("if-match"), op.method != "PUT"
            )
        if op.method == "DELETE":
            return self.delete_entity(account, table, keys, op.headers.get("if-match"))
        if op.method == "GET":
            return self.get_entity(inner, account, table, keys)
        raise invalid_input(f"The batch operation method {op.method!r} is not supported.")

    def _batch_response(
        self, failure: tuple[int, StorageError] | None, results: list[Response]
    ) -> Response:
        batch_b = f"batchresponse_{uuid.uuid4()}"
        change_b = f"changesetresponse_{uuid.uuid4()}"
        chunks: list[bytes] = [
            f"--{batch_b}\r\nContent-Type: multipart/mixed; boundary={change_b}\r\n\r\n".encode()
        ]

        def part(status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            from cumulo.storage.azure.http import _REASONS

            head = [
                f"--{change_b}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                "X-Content-Type-Options: nosniff",
                "Cache-Control: no-cache",
                "DataServiceVersion: 3.0;",
                *[f"{k}: {v}" for k, v in headers],
                "",
                "",
            ]
            chunks.append("\r\n".join(head).encode() + body + b"\r\n")

        if failure is not None:
            index, exc = failure
            doc = {
                "odata.error": {
                    "code": exc.code,
                    "message": {"lang": "en-US", "value": f"{index}:{exc.message}"},
                }
            }
            part(
                exc.http_status,
                [("Content-Type", JSON_TYPE), ("x-ms-error-code", exc.code)],
                json.dumps(doc).encode(),
            )
        else:
            for result in results:
                headers = [
                    (k, v)
                    for k, v in result.headers
                    if k in ("ETag", "Content-Type", "Preference-Applied", "Location")
                ]
                part(result.status, headers, result.body)
        chunks.append(f"--{change_b}--\r\n--{batch_b}--\r\n".encode())
        return Response(
            202, [("Content-Type", f"multipart/mixed; boundary={batch_b}")], b"".join(chunks)
        )


def in_key_range(key_range: tuple[str, str, str, str] | None, pk: str, rk: str) -> bool:
    """Is (pk, rk) inside a table SAS's spk/srk .. epk/erk range (inclusive)?"""
    if key_range is None:
        return True
    spk, srk, epk, erk = key_range
    if spk and (pk < spk or (pk == spk and srk and rk < srk)):
        return False
    return not (epk and (pk > epk or (pk == epk and erk and rk > erk)))


def check_key_range(key_range: tuple[str, str, str, str] | None, pk: Any, rk: Any) -> None:
    if not in_key_range(key_range, str(pk), str(rk)):
        raise StorageError(
            403,
            "AuthorizationFailure",
            "This request is not authorized to perform this operation: the entity is outside "
            "the SAS's partition/row key range.",
        )


def _json(status: int, doc: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        status,
        [("Content-Type", JSON_TYPE), *(headers or [])],
        json.dumps(doc, ensure_ascii=False).encode("utf-8"),
    )


def _top(q: dict[str, str]) -> int:
    raw = q.get("$top")
    if raw is None or raw == "":
        return MAX_TOP
    try:
        top = int(raw)
    except ValueError:
        raise invalid_input(f"$top={raw!r} is not a number.") from None
    if not 1 <= top <= MAX_TOP:
        raise invalid_input(f"$top={raw!r} is out of range (1-{MAX_TOP}).")
    return top


def _select(q: dict[str, str]) -> list[str] | None:
    raw = q.get("$select")
    if not raw or raw.strip() == "*":
        return None
    return [name.strip() for name in raw.split(",") if name.strip()]


def _unsupported(req: Request) -> StorageError:
    return StorageError(
        400,
        "InvalidUri",
        f"The requested URI does not represent any resource on the server: {req.method} "
        f"{req.raw_path}.",
    )
