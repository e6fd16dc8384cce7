"""Blob leases as a pure state machine (Azure's rules), used by the blob service.

A lease is ``Lease(lease_id, state, expires, duration, break_at)`` with ``state`` one of
``available``, ``leased``, ``breaking``, ``broken``; ``expires`` is when a fixed-duration lease
ends (``inf`` for an infinite one) and ``break_at`` when a breaking lease becomes broken. The
*effective* state adds ``expired`` (a leased lease past ``expires``). ``apply(lease, action, …)``
returns the new lease and the response headers, or raises Azure's error. Role code uses leases
for leader election (one instance runs the scheduled job); writes to a leased blob need the id.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace

from cumulo.storage.azure.errors import StorageError

INFINITE = math.inf


@dataclass(frozen=True)
class Lease:
    lease_id: str = ""
    state: str = "available"
    expires: float = 0.0
    duration: int = 0
    """-1 for infinite, else 15-60 seconds."""
    break_at: float = 0.0

    def effective(self, now: float) -> str:
        if self.state == "leased" and self.expires <= now:
            return "expired"
        if self.state == "breaking" and self.break_at <= now:
            return "broken"
        return self.state

    def active(self, now: float) -> bool:
        return self.effective(now) in ("leased", "breaking")

    def headers(self, now: float) -> list[tuple[str, str]]:
        state = self.effective(now)
        out = [
            ("x-ms-lease-status", "locked" if state in ("leased", "breaking") else "unlocked"),
            ("x-ms-lease-state", state),
        ]
        if state == "leased":
            out.append(("x-ms-lease-duration", "infinite" if self.duration == -1 else "fixed"))
        return out


def _conflict(code: str, message: str) -> StorageError:
    return StorageError(409, code, message)


def _lease_id(value: str | None, header: str) -> str:
    if not value:
        raise StorageError(
            400,
            "MissingRequiredHeader",
            f"An HTTP header that's mandatory for this request is not specified: {header}.",
        )
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise StorageError(
            400, "InvalidHeaderValue", f"The value of {header} ({value!r}) is not a GUID."
        ) from None


def _duration(value: str | None) -> int:
    try:
        duration = int(value or "")
    except ValueError:
        duration = 0
    if duration != -1 and not 15 <= duration <= 60:
        raise StorageError(
            400,
            "InvalidHeaderValue",
            f"x-ms-lease-duration must be -1 (infinite) or 15-60 seconds, not {value!r}.",
        )
    return duration


def apply(
    lease: Lease,
    action: str,
    now: float,
    *,
    lease_id: str | None = None,
    proposed_id: str | None = None,
    duration: str | None = None,
    break_period: str | None = None,
) -> tuple[Lease, int, list[tuple[str, str]]]:
    """One Lease Blob operation -> (new lease, HTTP status, response headers)."""
    state = lease.effective(now)
    if action == "acquire":
        seconds = _duration(duration)
        new_id = _lease_id(proposed_id, "x-ms-proposed-lease-id") if proposed_id else None
        if state in ("leased",) and not (new_id and new_id == lease.lease_id):
            raise _conflict("LeaseAlreadyPresent", "There is already a lease present.")
        if state == "breaking":
            raise _conflict(
                "LeaseIsBreakingAndCannotBeAcquired",
                "There is already a breaking lease, and the lease cannot be acquired.",
            )
        chosen = new_id or str(uuid.uuid4())
        expires = INFINITE if seconds == -1 else now + seconds
        new = Lease(chosen, "leased", expires, seconds, 0.0)
        return new, 201, [("x-ms-lease-id", chosen)]
    if action == "renew":
        given = _lease_id(lease_id, "x-ms-lease-id")
        if state in ("available",) or given != lease.lease_id:
            raise _conflict(
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
        if state in ("breaking", "broken"):
            raise _conflict(
                "LeaseIsBrokenAndCannotBeRenewed",
                "The lease ID matched, but the lease has been broken explicitly and cannot be "
                "renewed.",
            )
        expires = INFINITE if lease.duration == -1 else now + lease.duration
        return replace(lease, state="leased", expires=expires), 200, [("x-ms-lease-id", given)]
    if action == "change":
        given = _lease_id(lease_id, "x-ms-lease-id")
        new_id = _lease_id(proposed_id, "x-ms-proposed-lease-id")
        if state != "leased":
            if state == "breaking":
                raise _conflict(
                    "LeaseIsBreakingAndCannotBeChanged",
                    "The lease ID matched, but the lease is currently in breaking state.",
                )
            raise _conflict(
                "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the blob."
            )
        if given not in (lease.lease_id, new_id):
            raise _conflict(
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
        return replace(lease, lease_id=new_id), 200, [("x-ms-lease-id", new_id)]
    if action == "release":
        given = _lease_id(lease_id, "x-ms-lease-id")
        if state == "available" or given != lease.lease_id:
            raise _conflict(
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
        return Lease(), 200, []
    if action == "break":
        if state in ("available", "expired"):
            raise _conflict(
                "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the blob."
            )
        if state == "broken":
            return lease, 202, [("x-ms-lease-time", "0")]
        remaining = lease.break_at - now if state == "breaking" else lease.expires - now
        if break_period not in (None, ""):
            try:
                period = int(break_period)
            except ValueError:
                period = -1
            if not 0 <= period <= 60:
                raise StorageError(
                    400,
                    "InvalidHeaderValue",
                    f"x-ms-lease-break-period must be 0-60 seconds, not {break_period!r}.",
                )
            wait = min(float(period), remaining)
        else:
            wait = 0.0 if lease.duration == -1 and state == "leased" else remaining
        wait = max(0.0, wait)
        new = replace(lease, state="breaking", break_at=now + wait)
        return new, 202, [("x-ms-lease-time", str(math.ceil(wait)))]
    raise StorageError(
        400,
        "InvalidHeaderValue",
        f"x-ms-lease-action must be acquire, renew, change, release or break, not {action!r}.",
    )


def check_write(lease: Lease, now: float, given: str | None) -> None:
    """A write to a blob: with an active lease the request must carry its id (412 otherwise)."""
    if lease.active(now):
        if not given:
            raise StorageError(
                412,
                "LeaseIdMissing",
                "There is currently a lease on the blob and no lease ID was specified in the "
                "request.",
            )
        if given.lower() != lease.lease_id:
            raise StorageError(
                412,
                "LeaseIdMismatchWithBlobOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
    elif given:
        raise StorageError(
            412,
            "LeaseNotPresentWithBlobOperation",
            "There is currently no lease on the blob.",
        )


def check_read(lease: Lease, now: float, given: str | None) -> None:
    """A read may name a lease id; then it must be the active lease's."""
    if given and not (lease.active(now) and given.lower() == lease.lease_id):
        raise StorageError(
            412,
            "LeaseIdMismatchWithBlobOperation",
            "The lease ID specified did not match the lease ID for the blob.",
        )
