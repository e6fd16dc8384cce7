"""Retry policy for failed environment builds: exponential backoff, pure.

A failed build (``EnvironmentBuildError``: an index that is down, a requirement not yet on the
mirror) is retried after ``initial_delay``, then twice that, and so on up to ``max_delay``. It
never gives up silently: every failure is logged and the state (failures, next attempt, last
error) is there for the deployment's status; with ``max_attempts`` set it stops after that many
failures and says so (``gave_up``). A success resets the state. Input errors (a malformed
requirements file) are not retried: they cannot heal by waiting.

``RetryPolicy.after_failure(state, now, error)`` and ``after_success()`` return new states; nothing
here sleeps or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryState:
    """Where a role's environment build stands between attempts."""

    failures: int = 0
    """Consecutive failed attempts since the last success."""
    next_attempt_at: float | None = None
    """Monotonic time of the next attempt; None: now (no failure yet)."""
    last_error: str | None = None
    gave_up: bool = False
    """True when ``max_attempts`` failures were reached: no further automatic attempt."""

    def due(self, now: float) -> bool:
        """May an attempt start at ``now``?"""
        if self.gave_up:
            return False
        return self.next_attempt_at is None or now >= self.next_attempt_at


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between build attempts."""

    initial_delay: float = 5.0
    """Seconds before the first retry."""
    multiplier: float = 2.0
    """Each further retry waits this many times longer (>= 1)."""
    max_delay: float = 300.0
    """The longest wait between attempts, in seconds."""
    max_attempts: int | None = None
    """Give up after this many consecutive failures; None: keep retrying at ``max_delay``."""

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (failures >= 1)."""
        if failures < 1:
            return 0.0
        delay = self.initial_delay
        if self.multiplier == 1.0 or delay == 0.0:
            return min(delay, self.max_delay)
        for _ in range(failures - 1):
            delay *= self.multiplier
            if delay >= self.max_delay:
                return self.max_delay
        return delay

    def after_failure(self, state: RetryState, now: float, error: str) -> RetryState:
        failures = state.failures + 1
        if self.max_attempts is not None and failures >= self.max_attempts:
            return RetryState(failures, None, error, gave_up=True)
        return RetryState(failures, now + self.delay(failures), error, gave_up=False)

    def after_success(self) -> RetryState:
        return RetryState()
