"""``cumulo logs --follow`` prints each line once, from successive tails of a growing log."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cumulo.cli.service_cmds import new_lines


def test_new_lines_after_growth_and_after_the_tail_window_moved() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []


@given(st.lists(st.integers(0, 3), max_size=30), st.integers(1, 10), st.integers(0, 10))
def test_successive_tails_print_every_line_exactly_once(
    lines: list[int], window: int, grow: int
) -> None:
    log = [str(n) for n in lines]
    seen = log[-window:]
    printed = list(seen)
    log = log + [f"new{n}" for n in range(grow)]
    # Only when the new tail still overlaps the old one can the follower tell what is new.
    if grow < window:
        printed += new_lines(seen, log[-window:])
        assert printed[-grow:] == log[len(log) - grow :] if grow else True
        assert len(printed) == len(seen) + grow
