"""Reading an HTML form's body: multipart/form-data (RFC 7578) and urlencoded. Pure, stdlib only.

The standard library's ``cgi`` module is deprecated (and gone in Python 3.13), so the guestbook
parses the small forms it accepts itself. Bad input raises ``FormError`` with a sentence a
visitor can read; nothing here raises anything else for any body.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

MAX_PARTS = 16
"""More parts than this is not a guestbook form (it has three fields)."""

MAX_HEADER_BYTES = 8 * 1024
"""The header block of one part; browsers send about 150 bytes."""


class FormError(ValueError):
    """A form that cannot be read, or values that cannot be accepted; ``status`` is the HTTP one."""

    def __init__(self, sentence: str, status: int = 400) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.status = status


@dataclass(frozen=True)
class FilePart:
    """A file input: what the browser sent for it (an empty input has filename '' and no data)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class FormData:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, FilePart] = field(default_factory=dict)


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split ``main; a=1; b="x;y"`` into ``("main", {"a": "1", "b": "x;y"})``.

    Parameter names are lower-cased; quoted strings may hold ``;`` and backslash escapes;
    ``name*=UTF-8''percent-encoded`` (RFC 8187) is decoded and wins over ``name=``.
    """
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        start = i
        while i < n and rest[i] not in "=;":
            i += 1
        name = rest[start:i].strip().lower()
        if i >= n or rest[i] == ";":
            continue  # a parameter without a value: ignored
        i += 1  # '='
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            i += 1  # closing quote (or end)
            val = "".join(chars)
        else:
            start = i
            while i < n and rest[i] != ";":
                i += 1
            val = rest[start:i].strip()
        if not name:
            continue
        if name.endswith("*"):
            charset, _, encoded = val.partition("'")
            _lang, _, encoded = encoded.partition("'")
            try:
                extended[name[:-1]] = urllib.parse.unquote(
                    encoded, encoding=charset or "utf-8", errors="strict"
                )
            except (LookupError, UnicodeDecodeError):
                continue
        else:
            params.setdefault(name, val)
    params.update(extended)
    return main.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type (RFC 2046: 1-70 characters)."""
    kind, params = parse_header_value(content_type)
    if kind != "multipart/form-data":
        raise FormError(f"The form must be sent as multipart/form-data, not {kind or 'nothing'}.")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise FormError("The form's multipart boundary is missing or invalid.")
    return boundary.encode("ascii")


def _decode_text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(f"The field '{name}' is not valid UTF-8 text.") from None


def _parse_part_headers(block: bytes) -> dict[str, str]:
    if len(block) > MAX_HEADER_BYTES:
        raise FormError("A part of the form has headers that are too long.")
    headers: dict[str, str] = {}
    for raw in block.split(b"\r\n"):
        if not raw:
            continue
        name, sep, value = raw.partition(b":")
        if not sep:
            raise FormError("A part of the form has a malformed header line.")
        try:
            text = value.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = value.decode("latin-1").strip()
        headers[name.decode("latin-1").strip().lower()] = text
    return headers


def parse_multipart(body: bytes, boundary: bytes) -> FormData:
    """Parse a multipart/form-data body. The first value of a repeated name wins."""
    delimiter = b"\r\n--" + boundary
    # The first delimiter may come without a CRLF before it (no preamble).
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 2:
        raise FormError("The form's body does not contain its boundary; it may be truncated.")
    fields: dict[str, str] = {}
    files: dict[str, FilePart] = {}
    closed = False
    for count, piece in enumerate(pieces[1:], start=1):
        if piece.startswith(b"--"):
            closed = True
            break
        if count > MAX_PARTS:
            raise FormError(f"The form has more than {MAX_PARTS} parts.")
        # After the delimiter: optional transport padding (spaces/tabs), then CRLF.
        line_end = piece.find(b"\r\n")
        if line_end < 0 or piece[:line_end].strip(b" \t"):
            raise FormError("A part of the form is malformed (no line break after its boundary).")
        rest = piece[line_end + 2 :]
        if rest.startswith(b"\r\n"):
            header_block, content = b"", rest[2:]
        else:
            head_end = rest.find(b"\r\n\r\n")
            if head_end < 0:
                raise FormError("A part of the form has no end to its headers.")
            header_block, content = rest[:head_end], rest[head_end + 4 :]
        headers = _parse_part_headers(header_block)
        disposition, params = parse_header_value(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in params:
            raise FormError("A part of the form has no Content-Disposition form-data name.")
        name = params["name"]
        if "filename" in params:
            if name not in files:
                ctype = headers.get("content-type", "application/octet-stream")
                files[name] = FilePart(params["filename"], ctype, content)
        elif name not in fields:
            fields[name] = _decode_text(content, name)
    if not closed:
        raise FormError("The form's body ends before its closing boundary; it may be truncated.")
    return FormData(fields, files)


def parse_urlencoded(body: bytes) -> FormData:
    """Parse application/x-www-form-urlencoded (a form without a file input, or curl -d)."""
    try:
        text = body.decode("ascii")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_PARTS, errors="strict"
        )
    except UnicodeDecodeError:
        raise FormError("The form is not valid URL-encoded UTF-8 text.") from None
    except ValueError:
        raise FormError(f"The form has more than {MAX_PARTS} fields.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return FormData(fields, {})


def parse_form(content_type: str, body: bytes) -> FormData:
    """Parse a POSTed form by its Content-Type."""
    kind, _ = parse_header_value(content_type)
    if kind == "application/x-www-form-urlencoded":
        return parse_urlencoded(body)
    return parse_multipart(body, boundary_of(content_type))
