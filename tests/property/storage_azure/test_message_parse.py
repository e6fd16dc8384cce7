"""The queue message fast path reads exactly what the XML parser reads, or steps aside."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.queue import _parsed_message_text, _simple_message_text

HEAD = b"<?xml version='1.0' encoding='utf-8'?>\n"


def _parser_outcome(body: bytes) -> str | None:
    try:
        return _parsed_message_text(body)
    except StorageError:
        return None


def _check(body: bytes) -> None:
    fast = _simple_message_text(body)
    if fast is not None:  # the fast path may only answer what the parser answers
        assert fast == _parser_outcome(body), body


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_bodies_as_the_sdk_writes_them(text: str) -> None:
    root = ET.Element("QueueMessage")
    ET.SubElement(root, "MessageText").text = text
    body = HEAD + ET.tostring(root, encoding="unicode").encode("utf-8")
    _check(body)
    parsed = _parser_outcome(body)
    if parsed is not None and text and "\r" not in text:
        assert _simple_message_text(body) == parsed  # plain SDK bodies take the fast path


_PIECES = [b"a", b" ", b"\t", b"\n", b"\r", b"<", b">", b"&", b";", b"]]>", b"&lt;", b"&amp;",
           b"&#65;", b"&bogus;", b"\x00", b"\x1f", b"\xc3\xa9", b"\xc3", b"\xef\xbf\xbe", b"'",
           b'"', b"</MessageText>", b"<MessageText>", b"\x7f", b"\xc2\x85", b"\xef\xbf\xbf",
           b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"&#x0;", b"&quot;&apos;&gt;"]  # fmt: skip
_PREFIXES = [HEAD, b"", b'<?xml version="1.0" encoding="utf-8"?>', b"<?xml version='1.0\"?>",
             b"<?xml version='1.0' encoding='latin-1'?>", b" ", b"\x0c"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_PREFIXES),
    st.lists(st.sampled_from(_PIECES), max_size=12),
    st.sampled_from([b"", b"\n", b" x", b"<x/>"]),
)
def test_odd_bodies(prefix: bytes, pieces: list[bytes], suffix: bytes) -> None:
    body = prefix + b"<QueueMessage><MessageText>" + b"".join(pieces)
    body += b"</MessageText></QueueMessage>" + suffix
    _check(body)
