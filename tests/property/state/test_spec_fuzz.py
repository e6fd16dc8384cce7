"""Hypothesis: any JSON thrown at InstanceSpec.from_json gives a spec or a ValueError sentence."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.state.spec import InstanceSpec

GOOD = InstanceSpec("d", "s", "production", "Web", "web", "Web_IN_0", "/x").to_json()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def check(data: Any) -> None:
    try:
        spec = InstanceSpec.from_json(data)
    except ValueError as exc:
        assert str(exc).endswith(".") or "has bad value" in str(exc), str(exc)
    else:
        assert InstanceSpec.from_json(spec.to_json()) == spec


@settings(max_examples=200)
@given(json_values)
def test_random_json_never_raises_anything_else(data: Any) -> None:
    check(data)


@settings(max_examples=300)
@given(st.sampled_from(sorted(GOOD)), json_values)
def test_one_bad_field_is_a_sentence(field: str, value: Any) -> None:
    check({**GOOD, field: value})
