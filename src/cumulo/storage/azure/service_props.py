"""Get/Set Service Properties and Get Service Stats: stored per account and service, not enforced.

Role code rarely calls these, but SDK helpers and tools do; cumulo stores what is set (CORS,
logging, metrics settings) and returns it, and reports the secondary as "live".
"""

from __future__ import annotations

import defusedxml.ElementTree as SafeET

from cumulo.storage.azure.common import XML_HEAD, rfc1123
from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import invalid_xml
from cumulo.storage.azure.http import Request, Response

_DEFAULT = (
    "<StorageServiceProperties>"
    "<Logging><Version>1.0</Version><Delete>false</Delete><Read>false</Read>"
    "<Write>false</Write><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>"
    "<HourMetrics><Version>1.0</Version><Enabled>false</Enabled>"
    "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></HourMetrics>"
    "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled>"
    "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>"
    "<Cors />"
    "</StorageServiceProperties>"
)


class ServiceProperties:
    def __init__(self, db: Database, now: object) -> None:
        self.db = db
        self.now = now
        with db.write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS service_props (account TEXT NOT NULL, "
                "service TEXT NOT NULL, xml TEXT NOT NULL, PRIMARY KEY (account, service))"
            )

    def handle(self, req: Request, account: str, service: str) -> Response:
        comp = req.query.get("comp")
        if comp == "stats":
            body = (
                "<StorageServiceStats><GeoReplication><Status>live</Status>"
                f"<LastSyncTime>{rfc1123(0)}</LastSyncTime></GeoReplication></StorageServiceStats>"
            )
            return Response(200, [("Content-Type", "application/xml")], (XML_HEAD + body).encode())
        if req.method == "PUT":
            try:
                root = SafeET.fromstring(req.body_bytes())
            except Exception as exc:
                raise invalid_xml(str(exc)) from None
            if root.tag != "StorageServiceProperties":
                raise invalid_xml(f"the root element is <{root.tag}>")
            text = req.body_bytes().decode("utf-8", "replace")
            if text.startswith("<?xml"):
                text = text[text.index("?>") + 2 :]
            with self.db.write() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO service_props VALUES (?, ?, ?)",
                    (account, service, text.strip()),
                )
            return Response(202)
        row = self.db.conn.execute(
            "SELECT xml FROM service_props WHERE account=? AND service=?", (account, service)
        ).fetchone()
        body = row[0] if row else _DEFAULT
        return Response(200, [("Content-Type", "application/xml")], (XML_HEAD + body).encode())
