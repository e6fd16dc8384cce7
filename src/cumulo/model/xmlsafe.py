"""Safe XML reading with a line number on every element.

Built directly on expat with the protections defusedxml applies: a document that declares a DTD,
an entity, or refers to an external entity is refused, so no entity is ever expanded and nothing
is fetched. Files are capped in size before parsing. Failures come back as a ``Problem`` with the
file and line, never as an exception from the parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from cumulo.errors import Problem

MAX_XML_BYTES = 1024 * 1024
"""Largest .csdef / .cscfg / web.config cumulo reads (1 MiB; real files are a few KiB)."""


@dataclass
class Node:
    """One element: namespace, local name, attributes (``{ns}name`` or ``name``), children."""

    namespace: str
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Node] = field(default_factory=list)
    text: str = ""


class _Refused(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _split(name: str) -> tuple[str, str]:
    if "\x01" in name:
        ns, local = name.split("\x01", 1)
        return ns, local
    return "", name


def parse_xml(data: bytes, filename: str, max_bytes: int = MAX_XML_BYTES) -> Node | Problem:
    """Parse ``data`` into a tree of ``Node`` or return the one ``Problem`` that stops it."""
    if len(data) > max_bytes:
        return Problem(
            filename,
            None,
            f"is {len(data)} bytes; cumulo reads files of at most {max_bytes} bytes.",
        )
    parser = expat.ParserCreate(None, "\x01")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        ns, local = _split(name)
        clean: dict[str, str] = {}
        for key, value in attrs.items():
            ans, alocal = _split(key)
            clean[f"{{{ans}}}{alocal}" if ans else alocal] = value
        node = Node(ns, local, clean, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    def doctype(*_: object) -> None:
        raise _Refused(
            "declares a DTD (<!DOCTYPE>); cumulo refuses DTDs and entities in service files.",
            parser.CurrentLineNumber,
        )

    def entity(*_: object) -> None:
        raise _Refused(
            "declares an entity; cumulo refuses DTDs and entities in service files.",
            parser.CurrentLineNumber,
        )

    def external(*_: object) -> int:
        raise _Refused(
            "refers to an external entity; cumulo refuses DTDs and entities in service files.",
            parser.CurrentLineNumber,
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        return Problem(filename, exc.line, exc.message)
    except expat.ExpatError as exc:
        reason = expat.errors.messages.get(exc.code, str(exc)) if exc.code else str(exc)
        return Problem(filename, exc.lineno, f"is not well-formed XML: {reason}.")
    except (UnicodeError, ValueError, LookupError) as exc:
        return Problem(filename, None, f"cannot be read as XML text: {exc}.")
    if not root:
        return Problem(filename, None, "holds no XML element.")
    return root[0]
