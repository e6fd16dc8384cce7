"""Property tests: the OData filter core and the SharedKey header order."""

from __future__ import annotations

from functools import cmp_to_key
from typing import Any

from azure.storage.queue._shared.authentication import compare as sdk_compare
from hypothesis import given
from hypothesis import strategies as st

from cumulo.storage.azure.auth import header_compare
from cumulo.storage.azure.odata import compile_filter, evaluate, parse_filter

# -- header order: the same as the SDK's (the service's) comparator ------------------------

header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12
).map(lambda s: "x-ms-" + s)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


@given(header_names, header_names)
def test_header_compare_agrees_with_the_sdk(a: str, b: str) -> None:
    assert _sign(header_compare(a, b)) == _sign(sdk_compare(a, b))


@given(st.lists(header_names, max_size=8, unique=True))
def test_sorting_headers_matches_the_sdk(names: list[str]) -> None:
    ours = sorted(names, key=cmp_to_key(header_compare))
    theirs = sorted(names, key=cmp_to_key(sdk_compare))
    assert ours == theirs


# -- OData: rendering an expression and evaluating it agrees with Python semantics ---------

PROPS = {"n": "num", "s": "str", "b": "bool"}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


ops = st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"])
small_text = st.text(alphabet="ab' ()é", max_size=4)


@st.composite
def comparisons(draw: Any) -> tuple[str, Any]:
    prop = draw(st.sampled_from(sorted(PROPS)))
    op = draw(ops if PROPS[prop] != "bool" else st.sampled_from(["eq", "ne"]))
    if PROPS[prop] == "num":
        value: Any = draw(st.integers(-5, 5))
        text = str(value)
    elif PROPS[prop] == "str":
        value = draw(small_text)
        text = _quote(value)
    else:
        value = draw(st.booleans())
        text = "true" if value else "false"

    def check(entity: dict[str, Any]) -> bool:
        if prop not in entity:
            return False
        a, b = entity[prop], value
        return {
            "eq": a == b,
            "ne": a != b,
            "gt": a > b,
            "ge": a >= b,
            "lt": a < b,
            "le": a <= b,
        }[op]

    return f"{prop} {op} {text}", check


@st.composite
def expressions(draw: Any, depth: int = 0) -> tuple[str, Any]:
    if depth >= 3 or draw(st.booleans()):
        return draw(comparisons())
    kind = draw(st.sampled_from(["and", "or", "not"]))
    left_text, left = draw(expressions(depth + 1))
    if kind == "not":
        return f"not ({left_text})", lambda e: not left(e)
    right_text, right = draw(expressions(depth + 1))
    if kind == "and":
        return f"({left_text}) and ({right_text})", lambda e: left(e) and right(e)
    return f"({left_text}) or ({right_text})", lambda e: left(e) or right(e)


entities = st.fixed_dictionaries(
    {},
    optional={"n": st.integers(-6, 6), "s": small_text, "b": st.booleans()},
)


def _stored(entity: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    kinds = {"n": "Edm.Int32", "s": "Edm.String", "b": "Edm.Boolean"}
    return {k: (kinds[k], v) for k, v in entity.items()}


@given(expressions(), entities)
def test_filter_evaluation_matches_python(expr: tuple[str, Any], entity: dict[str, Any]) -> None:
    text, check = expr
    assert evaluate(parse_filter(text), _stored(entity)) == check(entity)


@given(st.text(max_size=20))
def test_string_literals_round_trip(value: str) -> None:
    node = parse_filter(f"s eq {_quote(value)}")
    assert evaluate(node, {"s": ("Edm.String", value)})
    assert not evaluate(node, {"s": ("Edm.String", value + "x")})


@given(st.text(max_size=30))
def test_arbitrary_filter_text_never_crashes(text: str) -> None:
    from cumulo.storage.azure.errors import StorageError

    try:
        node = parse_filter(text)
    except StorageError as exc:
        assert exc.http_status == 400
    else:
        evaluate(node, {"s": ("Edm.String", "x")})


@given(expressions(), entities)
def test_compiled_filters_agree_with_the_interpreter(
    expr: tuple[str, Any], entity: dict[str, Any]
) -> None:
    node = parse_filter(expr[0])
    stored = _stored(entity)
    assert compile_filter(node)(stored) == evaluate(node, stored)


@given(
    st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
    st.sampled_from(["1", "1.5", "2L", "'x'", "true", "datetime'2020-01-01T00:00:00Z'"]),
    st.sampled_from(
        [
            ("Edm.Int32", 1),
            ("Edm.Int64", 2),
            ("Edm.Double", float("nan")),
            ("Edm.Double", 1.5),
            ("Edm.String", "x"),
            ("Edm.Boolean", True),
            ("Edm.DateTime", "2020-01-01T00:00:00Z"),
            ("Edm.Guid", "not-a-guid"),
        ]
    ),
)
def test_compiled_comparisons_across_types(op: str, literal: str, stored: tuple[str, Any]) -> None:
    node = parse_filter(f"p {op} {literal}")
    entity = {"p": stored}
    assert compile_filter(node)(entity) == evaluate(node, entity)
