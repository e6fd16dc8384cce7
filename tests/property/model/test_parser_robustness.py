"""Damaged service files give sentences (ModelError), never another exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.errors import ModelError
from cumulo.model import service_from_bytes

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
CSDEF = (CORPUS / "ServiceDefinition.csdef").read_bytes()
CSCFG = (CORPUS / "ServiceConfiguration.cscfg").read_bytes()
CHARS = st.sampled_from(list(b"<>/=\"' abcxyz0123456789-*.&;:![]"))

edits = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "insert"]),
        st.floats(0, 1, exclude_max=True),
        st.lists(CHARS, min_size=1, max_size=5),
    ),
    min_size=1,
    max_size=3,
)


def _apply(data: bytes, changes: list[tuple[str, float, list[int]]]) -> bytes:
    out = bytearray(data)
    for op, where, chars in changes:
        pos = int(where * len(out))
        if op == "set":
            out[pos] = chars[0]
        elif op == "delete":
            del out[pos : pos + len(chars) * 5]
        else:
            out[pos:pos] = bytes(chars)
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(edits, st.booleans())
def test_damaged_files_fail_with_sentences(
    changes: list[tuple[str, float, list[int]]], in_def: bool
) -> None:
    csdef = _apply(CSDEF, changes) if in_def else CSDEF
    cscfg = CSCFG if in_def else _apply(CSCFG, changes)
    try:
        service_from_bytes(csdef, cscfg)
    except ModelError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message.endswith((".", "?")), problem
