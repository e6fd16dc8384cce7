"""The instance state machine: allowed edges only, events for every change."""

from __future__ import annotations

import pytest

from cumulo.state.states import (
    ALLOWED,
    IllegalTransition,
    InstanceState,
    StateMachine,
    shortest_path,
)

S = InstanceState


def machine(initial: InstanceState = S.STARTING) -> StateMachine:
    return StateMachine("d/Web_IN_0", initial, now=lambda: 42.0)


def test_normal_start_emits_one_change_per_edge() -> None:
    m = machine()
    seen = []
    m.subscribe(seen.append)
    m.change_state(S.BUSY, "startup tasks")
    m.change_state(S.READY, "OnStart returned true")
    assert [(c.old, c.new, c.reason) for c in seen] == [
        (S.STARTING, S.BUSY, "startup tasks"),
        (S.BUSY, S.READY, "OnStart returned true"),
    ]
    assert m.state is S.READY and m.since == 42.0


def test_illegal_edge_is_refused_with_a_sentence_and_changes_nothing() -> None:
    m = machine()
    with pytest.raises(IllegalTransition) as info:
        m.change_state(S.READY)
    assert "cannot go from StartingRole to ReadyRole" in str(info.value)
    assert "BusyRole" in str(info.value)
    assert m.state is S.STARTING and m.history == []


def test_same_state_is_not_an_edge() -> None:
    m = machine(S.READY)
    assert m.change_state(S.READY) is None
    assert m.history == []


def test_every_state_has_a_way_to_stopped_and_back() -> None:
    for state in S:
        if state is not S.STOPPED:
            assert shortest_path(state, S.STOPPED)[-1] is S.STOPPED
    assert shortest_path(S.STOPPED, S.READY) == [S.STARTING, S.BUSY, S.READY]


def test_stopped_is_only_left_by_starting_again() -> None:
    assert ALLOWED[S.STOPPED] == {S.STARTING}
    assert ALLOWED[S.STOPPING] == {S.STOPPED}


def test_azure_status_names() -> None:
    assert {s.value for s in S} == {
        "StartingRole",
        "BusyRole",
        "ReadyRole",
        "StoppingRole",
        "RestartingRole",
        "CyclingRole",
        "UnresponsiveRole",
        "FailedStartingRole",
        "StoppedVM",
    }
