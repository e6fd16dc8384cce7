"""Instance states: Azure's status names, an allowed-edges table and one ``change_state``.

This module must not depend on anything outside the standard library (like Supervisor's
``states.py``): the guest agent, the host API, the controller and the dashboard all read it.

Every edge the guest agent may take is listed in ``ALLOWED``; ``StateMachine.change_state`` is the
only way to move and refuses any other edge (``IllegalTransition``, a bug, never user input).
Listeners see every change as a ``StateChange`` (old, new, reason, time) so that one place emits
the ``instance.state`` events.

    StartingRole ─▶ BusyRole ─▶ ReadyRole ◀─▶ BusyRole (SetBusy)
         │            │  ▲          │
         │            ▼  │          ▼
         │     RestartingRole ◀── UnresponsiveRole      (exit, hang, recycle request)
         │       │    ▲   ▼
         │       │   CyclingRole / FailedStartingRole   (crash loop, startup task keeps failing)
         ▼       ▼
      StoppingRole ─▶ StoppedVM ─▶ StartingRole         (stop, reboot, reimage, rebuild)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class InstanceState(enum.StrEnum):
    """The status of one role instance, named as Azure's ``InstanceStatus`` values."""

    STARTING = "StartingRole"
    """Resources are being prepared (directories, approot, ports); nothing runs yet."""
    BUSY = "BusyRole"
    """Startup tasks, OnStart, or a StatusCheck handler that called set_busy: not routable."""
    READY = "ReadyRole"
    """Running and serving: in the load balancer's rotation (subject to a custom probe)."""
    STOPPING = "StoppingRole"
    """Leaving rotation, Stopping/OnStop, then SIGTERM and SIGKILL of its processes."""
    RESTARTING = "RestartingRole"
    """Stopped unexpectedly (or was recycled) and waits for its backoff delay to start again."""
    CYCLING = "CyclingRole"
    """Keeps crashing after start: restarted with growing delays, never given up."""
    UNRESPONSIVE = "UnresponsiveRole"
    """Stopped answering its heartbeat or its custom probe; about to be recycled."""
    FAILED_STARTING = "FailedStartingRole"
    """Keeps failing before its entry point runs (a startup task, a missing file); retried."""
    STOPPED = "StoppedVM"
    """Nothing of the instance runs."""


S = InstanceState

# Instance states in which a process of the instance may be running.
RUNNING_STATES: frozenset[InstanceState] = frozenset({S.BUSY, S.READY, S.UNRESPONSIVE, S.STOPPING})
# States shown while the instance waits to be started again.
WAITING_STATES: frozenset[InstanceState] = frozenset({S.RESTARTING, S.CYCLING, S.FAILED_STARTING})

ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    S.STARTING: frozenset(
        {
            S.BUSY,  # STARTING -> BUSY: resources ready, startup tasks begin
            S.FAILED_STARTING,  # STARTING -> FAILED_STARTING: cannot prepare (unreachable files)
            S.RESTARTING,  # STARTING -> RESTARTING: preparation failed, waiting to retry
            S.STOPPING,  # STARTING -> STOPPING: removed before it ran
        }
    ),
    S.BUSY: frozenset(
        {
            S.READY,  # BUSY -> READY: OnStart returned true / program started / site listens
            S.RESTARTING,  # BUSY -> RESTARTING: entry point or simple task failed
            S.CYCLING,  # BUSY -> CYCLING: ... and it keeps failing
            S.FAILED_STARTING,  # BUSY -> FAILED_STARTING: a simple startup task keeps failing
            S.UNRESPONSIVE,  # BUSY -> UNRESPONSIVE: heartbeat lost during OnStart
            S.STOPPING,  # BUSY -> STOPPING: stop requested
        }
    ),
    S.READY: frozenset(
        {
            S.BUSY,  # READY -> BUSY: a StatusCheck handler called set_busy
            S.RESTARTING,  # READY -> RESTARTING: exited, recycle requested, change cancelled
            S.CYCLING,  # READY -> CYCLING: exited again soon after a restart
            S.UNRESPONSIVE,  # READY -> UNRESPONSIVE: heartbeat or custom probe lost
            S.STOPPING,  # READY -> STOPPING: stop requested
        }
    ),
    S.UNRESPONSIVE: frozenset(
        {
            S.RESTARTING,  # UNRESPONSIVE -> RESTARTING: recycled
            S.CYCLING,  # UNRESPONSIVE -> CYCLING: recycled, and it is a crash loop
            S.STOPPING,  # UNRESPONSIVE -> STOPPING: stop requested
        }
    ),
    S.RESTARTING: frozenset(
        {
            S.BUSY,  # RESTARTING -> BUSY: backoff elapsed, starting again
            S.STARTING,  # RESTARTING -> STARTING: backoff elapsed, preparing again
            S.CYCLING,  # RESTARTING -> CYCLING: the restart policy sees a crash loop
            S.FAILED_STARTING,  # RESTARTING -> FAILED_STARTING: a simple task keeps failing
            S.STOPPING,  # RESTARTING -> STOPPING: stop requested while waiting
        }
    ),
    S.CYCLING: frozenset(
        {
            S.BUSY,  # CYCLING -> BUSY: backoff elapsed, starting again
            S.STARTING,  # CYCLING -> STARTING: backoff elapsed, preparing again
            S.RESTARTING,  # CYCLING -> RESTARTING: a recycle after a stable run
            S.STOPPING,  # CYCLING -> STOPPING: stop requested
        }
    ),
    S.FAILED_STARTING: frozenset(
        {
            S.BUSY,  # FAILED_STARTING -> BUSY: retry of the startup tasks
            S.STARTING,  # FAILED_STARTING -> STARTING: preparing resources again
            S.STOPPING,  # FAILED_STARTING -> STOPPING: stop requested
        }
    ),
    S.STOPPING: frozenset(
        {
            S.STOPPED,  # STOPPING -> STOPPED: every process is gone
        }
    ),
    S.STOPPED: frozenset(
        {
            S.STARTING,  # STOPPED -> STARTING: reboot, reimage, rebuild, or started again
        }
    ),
}

INITIAL_STATE = S.STARTING


class IllegalTransition(RuntimeError):
    """An edge not in ``ALLOWED`` was asked for: a bug in the guest agent, never user input."""

    def __init__(self, name: str, old: InstanceState, new: InstanceState) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[old])) or "none"
        super().__init__(
            f"Instance '{name}' cannot go from {old.value} to {new.value}; "
            f"from {old.value} it may go to: {allowed}."
        )
        self.old = old
        self.new = new


@dataclass(frozen=True)
class StateChange:
    """One transition: what the state was, what it is, why, and when (wall clock seconds)."""

    name: str
    old: InstanceState
    new: InstanceState
    reason: str
    at: float


Listener = Callable[[StateChange], None]


def can_change(old: InstanceState, new: InstanceState) -> bool:
    """True when ``old -> new`` is an allowed edge (staying in place is not an edge)."""
    return new in ALLOWED[old]


class StateMachine:
    """The state of one instance; ``change_state`` is the only way it moves."""

    def __init__(
        self,
        name: str,
        initial: InstanceState = INITIAL_STATE,
        *,
        now: Callable[[], float],
    ) -> None:
        self.name = name
        self._state = initial
        self._now = now
        self._listeners: list[Listener] = []
        self.history: list[StateChange] = []
        self.since = now()

    @property
    def state(self) -> InstanceState:
        return self._state

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def change_state(self, new: InstanceState, reason: str = "") -> StateChange | None:
        """Move to ``new`` along an allowed edge; a no-op (None) when already there."""
        old = self._state
        if new is old:
            return None
        if not can_change(old, new):
            raise IllegalTransition(self.name, old, new)
        self._state = new
        self.since = self._now()
        change = StateChange(self.name, old, new, reason, self.since)
        self.history.append(change)
        del self.history[:-100]
        for listener in list(self._listeners):
            listener(change)
        return change

    def path_to(self, target: InstanceState) -> list[InstanceState]:
        """The shortest list of states leading from the current state to ``target`` (BFS)."""
        return shortest_path(self._state, target)


def shortest_path(start: InstanceState, target: InstanceState) -> list[InstanceState]:
    """States after ``start`` leading to ``target`` along allowed edges; [] if already there."""
    if start is target:
        return []
    previous: dict[InstanceState, InstanceState] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt: list[InstanceState] = []
        for state in frontier:
            for to in sorted(ALLOWED[state], key=lambda s: s.value):
                if to in seen:
                    continue
                seen.add(to)
                previous[to] = state
                if to is target:
                    path = [to]
                    while path[-1] in previous and previous[path[-1]] is not start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                nxt.append(to)
        frontier = nxt
    raise IllegalTransition("?", start, target)
