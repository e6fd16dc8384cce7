"""Pure evaluation of a custom probe's results: readiness (routes) and liveness (recycles).

Readiness: an instance is in rotation from a successful probe until ``timeout_s`` has passed
without one (Azure's ``timeoutInSeconds``: "no response for this long stops traffic"); it comes
back at the first success. Liveness: once ``liveness_factor * timeout_s`` has passed without a
success (counted from the last success, or from when probing began), the instance is hung: it
becomes UnresponsiveRole and is recycled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProbeStatus:
    interval_s: float
    timeout_s: float
    liveness_factor: float
    since: float
    """When probing began (monotonic seconds)."""
    last_success: float | None = None
    consecutive_failures: int = 0
    last_error: str = ""


def record(status: ProbeStatus, ok: bool, now: float, error: str = "") -> ProbeStatus:
    if ok:
        return replace(status, last_success=now, consecutive_failures=0, last_error="")
    return replace(status, consecutive_failures=status.consecutive_failures + 1, last_error=error)


def routable(status: ProbeStatus, now: float) -> bool:
    return status.last_success is not None and now - status.last_success < status.timeout_s


def hung(status: ProbeStatus, now: float) -> bool:
    reference = status.last_success if status.last_success is not None else status.since
    return now - reference >= status.liveness_factor * status.timeout_s
