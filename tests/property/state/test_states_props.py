"""Hypothesis: no illegal edge is ever taken, whatever the guest agent asks for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cumulo.state.states import (
    ALLOWED,
    INITIAL_STATE,
    IllegalTransition,
    InstanceState,
    StateMachine,
    shortest_path,
)

states = st.sampled_from(list(InstanceState))


@given(st.lists(states, max_size=60))
def test_random_requests_only_ever_follow_allowed_edges(requests: list[InstanceState]) -> None:
    m = StateMachine("x", now=lambda: 0.0)
    for target in requests:
        before = m.state
        try:
            m.change_state(target)
        except IllegalTransition:
            assert target not in ALLOWED[before]
            assert m.state is before
        else:
            assert m.state is target
    for change in m.history:
        assert change.new in ALLOWED[change.old]


@given(st.lists(states, max_size=40))
def test_walking_shortest_paths_reaches_every_target_legally(targets: list[InstanceState]) -> None:
    m = StateMachine("x", now=lambda: 0.0)
    for target in targets:
        for step in shortest_path(m.state, target):
            m.change_state(step)
        assert m.state is target
    assert all(c.new in ALLOWED[c.old] for c in m.history)


def test_every_state_is_reachable_from_the_initial_state() -> None:
    for target in InstanceState:
        if target is not INITIAL_STATE:
            assert shortest_path(INITIAL_STATE, target)[-1] is target
