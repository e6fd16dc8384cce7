"""What a guestbook entry is: validation of a signature, its keys, the picture check. Pure.

Table layout (the classic sample's): PartitionKey is the UTC date (``2026-11-25``), RowKey an
inverted timestamp plus a random suffix, so a partition lists newest first and two visitors
signing in the same nanosecond still get two rows.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from formdata import FormData, FormError

NAME_MAX = 60
MESSAGE_MAX = 1000
PICTURE_MAX = 4 * 1024 * 1024
"""Largest accepted picture (bytes); Azure's sample used 4 MB too."""
BODY_MAX = PICTURE_MAX + 64 * 1024
"""Largest accepted request body: the picture plus room for the text fields and framing."""

_INVERT = 10**19 - 1
"""Largest 19-digit number: row keys keep 19 digits for every time from 1970 on."""
_ROW_KEY = re.compile(r"^[0-9]{19}-[0-9a-f]{12}$")
_PARTITION_KEY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

PICTURE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
"""Extension -> Content-Type of the pictures the guestbook accepts (raster formats only)."""


@dataclass(frozen=True)
class Picture:
    data: bytes
    extension: str

    @property
    def content_type(self) -> str:
        return PICTURE_TYPES[self.extension]


@dataclass(frozen=True)
class Signature:
    name: str
    message: str
    picture: Picture | None


def sniff_picture(data: bytes) -> str | None:
    """The picture's extension from its first bytes (not from what the browser claims)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _clean(value: str, label: str, limit: int, *, multiline: bool) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not value:
        raise FormError(f"Please write your {label}.")
    if len(value) > limit:
        raise FormError(f"Your {label} has {len(value)} characters; at most {limit} fit.")
    if _CONTROL.search(value) or (not multiline and ("\n" in value or "\t" in value)):
        what = "control characters" if multiline else "line breaks or control characters"
        raise FormError(f"Your {label} must not contain {what}.")
    return value


def validate(form: FormData) -> Signature:
    """A signature from the posted form, or FormError with the first problem as a sentence."""
    name = _clean(form.fields.get("name", ""), "name", NAME_MAX, multiline=False)
    message = _clean(form.fields.get("message", ""), "message", MESSAGE_MAX, multiline=True)
    picture = None
    upload = form.files.get("picture")
    if upload is not None and (upload.filename or upload.data):
        if not upload.data:
            raise FormError(f"The picture '{upload.filename}' is empty.")
        if len(upload.data) > PICTURE_MAX:
            raise FormError(
                f"The picture is {len(upload.data) / 1048576:.1f} MB; at most "
                f"{PICTURE_MAX // 1048576} MB are accepted.",
                status=413,
            )
        extension = sniff_picture(upload.data)
        if extension is None:
            raise FormError(
                f"The file '{upload.filename}' is not a picture the guestbook accepts; "
                "send a JPEG, PNG, GIF or WebP image."
            )
        picture = Picture(upload.data, extension)
    return Signature(name, message, picture)


def partition_key(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def row_key(time_ns: int, suffix: str | None = None) -> str:
    """Newest first: the inverted timestamp, zero-padded, then 12 random hex digits."""
    tail = suffix if suffix is not None else uuid.uuid4().hex[:12]
    return f"{_INVERT - time_ns:019d}-{tail}"


def is_row_key(value: str) -> bool:
    return bool(_ROW_KEY.match(value))


def is_partition_key(value: str) -> bool:
    return bool(_PARTITION_KEY.match(value))


_BLOB_NAME = re.compile(r"^[0-9]{19}-[0-9a-f]{12}\.(jpg|png|gif|webp)$")


def picture_blob_name(row: str, extension: str) -> str:
    return f"{row}.{extension}"


def blob_extension(name: str) -> str | None:
    """The extension of a blob name the guestbook made, or None for any other name."""
    match = _BLOB_NAME.match(name)
    return match.group(1) if match else None
