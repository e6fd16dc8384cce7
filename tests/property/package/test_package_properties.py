"""Properties of packages: reading gives back exactly what was built; building is deterministic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.errors import PackageError
from cumulo.package import build_bytes, open_package

PART = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True).filter(
    lambda p: p not in (".", "..")
)
PATHS = st.lists(PART, min_size=1, max_size=3).map(lambda parts: "R/" + "/".join(parts))
FILES = st.dictionaries(PATHS, st.binary(max_size=300), max_size=8)


def _prefix_free(files: dict[str, bytes]) -> dict[str, bytes]:
    """Drop paths that are a folder of another path, and case-insensitive clashes."""
    names = sorted(files)
    keep: dict[str, bytes] = {}
    seen: set[str] = set()
    for n in names:
        if any(o.startswith(n + "/") or n.startswith(o + "/") for o in names if o != n):
            continue
        if n.casefold() in seen:
            continue
        seen.add(n.casefold())
        keep[n] = files[n]
    return keep


@settings(max_examples=60, deadline=None)
@given(FILES, st.randoms(use_true_random=False))
def test_build_then_read_is_identity_and_order_free(files: dict[str, bytes], rnd) -> None:  # type: ignore[no-untyped-def]
    files = {"ServiceDefinition.csdef": b"<x/>", **_prefix_free(files)}
    data = build_bytes(files)
    shuffled = list(files.items())
    rnd.shuffle(shuffled)
    assert build_bytes(dict(shuffled)) == data
    pkg = open_package(data)
    assert dict(pkg.contents) == files


VALID = build_bytes({"ServiceDefinition.csdef": b"<x/>", "R/a.py": b"print(1)\n" * 50})


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=4))
def test_corrupted_packages_fail_with_a_sentence(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for index, value in flips:
        data[index] = value
    try:
        pkg = open_package(bytes(data))
    except PackageError as exc:
        assert str(exc).endswith((".", ")."))
    else:
        assert pkg.read("ServiceDefinition.csdef") == b"<x/>"
