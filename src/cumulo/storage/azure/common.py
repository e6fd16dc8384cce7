"""Helpers shared by the three services: times, XML, metadata headers, names."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from cumulo.storage.azure.errors import StorageError, invalid_name

XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>'
_GMT = "%a, %d %b %Y %H:%M:%S GMT"


def rfc1123(ts: float) -> str:
    """A Unix time as Azure writes it in headers and queue XML (whole seconds)."""
    return time.strftime(_GMT, time.gmtime(ts))


def parse_rfc1123(value: str) -> float | None:
    try:
        return datetime.strptime(value.strip(), _GMT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def iso8601(ts: float) -> str:
    """A Unix time in the 7-digit ISO form the table service uses."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


_VARIANT = "89ab"


def new_guid() -> str:
    """A random version-4 GUID as text (the same as ``str(uuid.uuid4())``, at half the cost:
    request and message ids are made on every request)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def xml_text(value: str) -> str:
    return escape(value)


def meta_from_headers(headers: dict[str, str]) -> dict[str, str]:
    """The ``x-ms-meta-NAME`` headers as a dict (names as received, lower-cased by HTTP)."""
    meta: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith("x-ms-meta-"):
            key = name[10:]
            if not key or not _META_NAME.match(key):
                raise StorageError(
                    400,
                    "InvalidMetadata",
                    f"The metadata specified is invalid: name {key!r} is not a C# identifier.",
                )
            meta[key] = value
    return meta


_META_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def meta_headers(meta: dict[str, str]) -> list[tuple[str, str]]:
    return [(f"x-ms-meta-{k}", v) for k, v in meta.items()]


def meta_xml(meta: dict[str, str]) -> str:
    return (
        "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in meta.items()) + "</Metadata>"
    )


_DNS_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def check_dns_name(kind: str, name: str) -> None:
    """Queue and container names: 3-63 of a-z 0-9 '-', no leading/trailing/double hyphen."""
    if not _DNS_NAME.match(name):
        raise invalid_name(
            kind,
            name,
            "use 3-63 lower-case letters, digits and single hyphens, starting and ending with "
            "a letter or digit",
        )


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    from cumulo.storage.azure.errors import bad_query, out_of_range

    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_query(name, raw, "not an integer") from None
    if not low <= value <= high:
        raise out_of_range(name, raw, f"allowed {low}..{high}")
    return value
