"""The restart policy: pure exponential backoff with jitter, reset after a stable run.

``next_action(policy, history, failure, now=..., rand=...)`` decides how long an instance waits
before it starts again and which state it shows meanwhile. It never gives up: a crash loop keeps
being retried at the capped delay and shows as ``CyclingRole`` (``FailedStartingRole`` when it is a
startup task or the preparation that keeps failing), with the last exit code and the reason.

Defaults: first delay 0.5 s, doubling, capped at 60 s, ±20 % jitter; the count of consecutive
failures resets when the instance ran for ``reset_after`` (1 s) before failing; the third
consecutive failure turns ``RestartingRole`` into ``CyclingRole``. No clock is read here: ``now``
and the jitter draw ``rand`` (in [0, 1)) are passed in, so tests assert exact delays.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from cumulo.state.states import InstanceState


class FailureKind(enum.StrEnum):
    """What failed."""

    EXITED = "exited"
    """The entry point (program or hosted site) exited."""
    UNRESPONSIVE = "unresponsive"
    """Heartbeat or custom probe lost; the instance was recycled."""
    STARTUP_TASK = "startup-task"
    """A simple startup task exited non-zero (or could not start)."""
    PREPARE = "prepare"
    """The instance could not be prepared (files, user, interpreter)."""
    RECYCLE = "recycle"
    """A recycle asked for by the role (request_recycle, cancelled change, Run returned)."""


REASON_FIRST = "first failure after a stable run"
REASON_BACKOFF = "failed {n} times in a row; waiting {delay:.2f} s before attempt {next}"
REASON_CYCLING = "crash loop: failed {n} times in a row; retrying every {delay:.2f} s or less"


@dataclass(frozen=True)
class RestartPolicy:
    """How an instance is restarted. Every field in seconds unless said otherwise."""

    base: float = 0.5
    """Delay after the first failure."""
    factor: float = 2.0
    """Each further consecutive failure multiplies the delay by this."""
    cap: float = 60.0
    """The delay never exceeds this (jitter included)."""
    jitter: float = 0.2
    """Fraction of the delay added or removed at random (0.2 = ±20 %)."""
    reset_after: float = 1.0
    """A run at least this long before failing resets the consecutive-failure count, so it waits
    only ``base`` again (supervisord's ``startsecs``): backoff and CyclingRole are for programs
    that fail as they start, while a healthy instance that is killed — by a crash, the OOM
    killer or ``kill -9`` — is back in rotation within a second, however often it happens."""
    cycling_after: int = 3
    """From this many consecutive failures on, the instance shows CyclingRole/FailedStartingRole."""
    recycle_delay: float = 0.0
    """Delay before starting again after a requested recycle (not counted as a failure)."""

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.factor < 1:
            raise ValueError(f"invalid restart policy {self!r}: need 0 < base <= cap, factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"invalid restart policy jitter {self.jitter!r}: need 0 <= j < 1")
        if self.cycling_after < 1:
            raise ValueError(f"invalid restart policy cycling_after {self.cycling_after!r}")


@dataclass(frozen=True)
class RestartHistory:
    """What the policy remembers about one instance."""

    consecutive: int = 0
    """Failures in a row without a stable run in between."""
    total: int = 0
    """Every failure and recycle since the instance was placed."""
    last_failure_at: float | None = None
    last_exit_code: int | None = None
    last_reason: str = ""


@dataclass(frozen=True)
class Failure:
    """One failure to decide on."""

    kind: FailureKind
    started_at: float | None
    """When the failed attempt started (monotonic seconds), None if it never started."""
    exit_code: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    """Wait ``delay`` seconds in ``state``, then start again; ``history`` is the new history."""

    delay: float
    state: InstanceState
    reason: str
    history: RestartHistory


def raw_delay(policy: RestartPolicy, consecutive: int) -> float:
    """The delay before jitter after ``consecutive`` (>= 1) failures in a row."""
    exponent = max(0, consecutive - 1)
    # Avoid float overflow for very long loops: stop multiplying once the cap is reached.
    delay = policy.base
    for _ in range(exponent):
        delay *= policy.factor
        if delay >= policy.cap:
            return policy.cap
    return min(delay, policy.cap)


def next_action(
    policy: RestartPolicy,
    history: RestartHistory,
    failure: Failure,
    *,
    now: float,
    rand: float,
) -> Decision:
    """Decide the delay and the waiting state after ``failure`` at time ``now``."""
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand!r}")
    # Only a run of the entry point can be stable: a startup task or a preparation that keeps
    # failing, however slowly, is a loop before the instance ever ran.
    stable = (
        failure.kind not in (FailureKind.STARTUP_TASK, FailureKind.PREPARE)
        and failure.started_at is not None
        and now - failure.started_at >= policy.reset_after
    )
    if failure.kind is FailureKind.RECYCLE:
        # A recycle the role asked for is not a failure; a stable run also resets the count.
        consecutive = 0 if stable else history.consecutive
        new = replace(
            history,
            consecutive=consecutive,
            total=history.total + 1,
            last_failure_at=now,
            last_exit_code=failure.exit_code,
            last_reason=failure.detail or "recycle requested",
        )
        return Decision(policy.recycle_delay, InstanceState.RESTARTING, new.last_reason, new)

    consecutive = 1 if stable else history.consecutive + 1
    raw = raw_delay(policy, consecutive)
    delay = min(policy.cap, raw * (1.0 + policy.jitter * (2.0 * rand - 1.0)))
    looping = consecutive >= policy.cycling_after
    if looping:
        before_entry = failure.kind in (FailureKind.STARTUP_TASK, FailureKind.PREPARE)
        state = InstanceState.FAILED_STARTING if before_entry else InstanceState.CYCLING
        reason = REASON_CYCLING.format(n=consecutive, delay=delay)
    else:
        state = InstanceState.RESTARTING
        reason = REASON_BACKOFF.format(n=consecutive, delay=delay, next=consecutive + 1)
    if failure.detail:
        reason = f"{failure.detail.rstrip('.')}; {reason}"
    new = RestartHistory(
        consecutive=consecutive,
        total=history.total + 1,
        last_failure_at=now,
        last_exit_code=failure.exit_code,
        last_reason=reason,
    )
    return Decision(delay, state, reason, new)
