"""The blob lease state machine (Azure's rules) with explicit times."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.lease import Lease, apply, check_read, check_write

ID = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"


def _acquire(now: float = 0.0, duration: str = "15") -> Lease:
    lease, status, headers = apply(Lease(), "acquire", now, proposed_id=ID, duration=duration)
    assert status == 201
    assert headers == [("x-ms-lease-id", ID)]
    return lease


def _code(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    with pytest.raises(StorageError) as info:
        fn(*args, **kwargs)
    return info.value.code


def test_fixed_lease_expires_and_can_be_taken_by_another() -> None:
    lease = _acquire(duration="15")
    assert lease.effective(14.9) == "leased"
    assert lease.effective(15.0) == "expired"
    assert _code(apply, lease, "acquire", 10.0, proposed_id=OTHER, duration="15") == (
        "LeaseAlreadyPresent"
    )
    taken, _status, _h = apply(lease, "acquire", 16.0, proposed_id=OTHER, duration="-1")
    assert taken.lease_id == OTHER
    assert taken.effective(10_000.0) == "leased"


def test_renew_extends_and_needs_the_same_id() -> None:
    lease = _acquire()
    renewed, status, _h = apply(lease, "renew", 20.0, lease_id=ID)  # expired, not retaken
    assert status == 200
    assert renewed.effective(34.0) == "leased"
    assert _code(apply, renewed, "renew", 21.0, lease_id=OTHER) == (
        "LeaseIdMismatchWithLeaseOperation"
    )


def test_change_and_release() -> None:
    lease = _acquire()
    changed, _status, headers = apply(lease, "change", 1.0, lease_id=ID, proposed_id=OTHER)
    assert changed.lease_id == OTHER
    assert headers == [("x-ms-lease-id", OTHER)]
    released, status, _h = apply(changed, "release", 2.0, lease_id=OTHER)
    assert (released.state, status) == ("available", 200)


def test_break_with_a_period_then_broken() -> None:
    lease = _acquire(duration="-1")
    breaking, status, headers = apply(lease, "break", 0.0, break_period="10")
    assert status == 202
    assert headers == [("x-ms-lease-time", "10")]
    assert breaking.effective(5.0) == "breaking"
    assert breaking.effective(10.0) == "broken"
    assert _code(apply, breaking, "renew", 5.0, lease_id=ID) == "LeaseIsBrokenAndCannotBeRenewed"
    assert _code(apply, breaking, "acquire", 5.0, duration="15") == (
        "LeaseIsBreakingAndCannotBeAcquired"
    )
    again, _s, _h = apply(breaking, "acquire", 11.0, proposed_id=OTHER, duration="15")
    assert again.lease_id == OTHER


def test_infinite_lease_breaks_immediately_without_a_period() -> None:
    lease = _acquire(duration="-1")
    broken, _status, headers = apply(lease, "break", 0.0)
    assert headers == [("x-ms-lease-time", "0")]
    assert broken.effective(0.0) == "broken"


@pytest.mark.parametrize("duration", ["14", "61", "0", "x", None])
def test_bad_durations(duration: str | None) -> None:
    assert _code(apply, Lease(), "acquire", 0.0, duration=duration) == "InvalidHeaderValue"


def test_writes_and_reads_against_a_lease() -> None:
    lease = _acquire()
    assert _code(check_write, lease, 1.0, None) == "LeaseIdMissing"
    assert _code(check_write, lease, 1.0, OTHER) == "LeaseIdMismatchWithBlobOperation"
    check_write(lease, 1.0, ID)
    check_write(lease, 20.0, None)  # expired: anyone may write
    assert _code(check_write, Lease(), 1.0, ID) == "LeaseNotPresentWithBlobOperation"
    check_read(lease, 1.0, None)
    check_read(lease, 1.0, ID)
    assert _code(check_read, lease, 1.0, OTHER) == "LeaseIdMismatchWithBlobOperation"
    assert _code(apply, lease, "nonsense", 0.0) == "InvalidHeaderValue"
    assert _code(apply, Lease(), "break", 0.0) == "LeaseNotPresentWithLeaseOperation"
