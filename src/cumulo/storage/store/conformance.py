"""One test body for every ``Store`` backend (Nomad's ``testDB``, trio's ``check_*`` helpers).

A backend's test module calls ``check_store(factory)`` where ``factory()`` opens a store on
fresh, empty storage and ``reopen(store)`` (optional) closes it and opens the same storage again
(to check durability). Each check raises ``AssertionError`` with a sentence on failure.
"""

from __future__ import annotations

from collections.abc import Callable

from cumulo.errors import ConflictError, InputError, NotFoundError
from cumulo.storage.store.protocol import Store
from cumulo.storage.store.records import (
    AutoscaleRecord,
    CertificateRecord,
    DeploymentRecord,
    OperationRecord,
    OperationStatus,
    PreconditionFailed,
    ServiceRecord,
)

Factory = Callable[[], Store]
Reopen = Callable[[Store], Store]


def _raises(kind: type[BaseException], fn: Callable[[], object], what: str) -> BaseException:
    try:
        fn()
    except kind as exc:
        return exc
    raise AssertionError(f"{what} should raise {kind.__name__}")


def _dep(service: str, slot: str, dep_id: str = "") -> DeploymentRecord:
    return DeploymentRecord(
        id=dep_id,
        service=service,
        slot=slot,
        name="",
        status="Running",
        package_digest="sha256:" + "0" * 64,
        configuration="<ServiceConfiguration/>",
        document={"roles": [{"name": "Web", "count": 2}]},
    )


def check_services(store: Store) -> None:
    created = store.create_service(ServiceRecord("shop", "Shop", "the shop"))
    assert created.created_at > 0, "create_service stamps created_at"
    assert store.get_service("shop").label == "Shop"
    _raises(ConflictError, lambda: store.create_service(ServiceRecord("shop")), "a duplicate")
    _raises(NotFoundError, lambda: store.get_service("nope"), "a missing service")
    store.create_service(ServiceRecord("alpha"))
    assert [s.name for s in store.list_services()] == ["alpha", "shop"]
    store.delete_service("alpha")
    _raises(NotFoundError, lambda: store.delete_service("alpha"), "deleting twice")


def check_deployments(store: Store) -> None:
    store.create_service(ServiceRecord("web"))
    _raises(NotFoundError, lambda: store.create_deployment(_dep("ghost", "production")), "no svc")
    _raises(InputError, lambda: store.create_deployment(_dep("web", "canary")), "a bad slot")
    prod = store.create_deployment(_dep("web", "production"))
    assert len(prod.id) == 32 and prod.revision == 1 and prod.name == prod.id
    assert prod.document == {"roles": [{"name": "Web", "count": 2}]}
    _raises(ConflictError, lambda: store.create_deployment(_dep("web", "production")), "slot taken")
    assert store.get_deployment("web", "production") == prod
    assert store.get_deployment_by_id(prod.id) == prod
    _raises(NotFoundError, lambda: store.get_deployment("web", "staging"), "empty slot")
    _raises(NotFoundError, lambda: store.get_deployment("nope", "staging"), "missing service")
    exc = _raises(ConflictError, lambda: store.delete_service("web"), "a service with deployments")
    assert "production" in str(exc), "the refusal names the slots"

    updated = store.update_deployment(prod.id, expect_revision=1, status="Suspended")
    assert updated.revision == 2 and updated.status == "Suspended"
    assert updated.document == prod.document and updated.etag != prod.etag
    stale = _raises(
        PreconditionFailed,
        lambda: store.update_deployment(prod.id, expect_revision=1, status="Running"),
        "a write at an old revision",
    )
    assert "revision 2, not 1" in str(stale)
    doc = store.update_deployment(prod.id, document={"x": 1}, configuration="<c/>")
    assert doc.revision == 3 and doc.document == {"x": 1} and doc.configuration == "<c/>"

    staging = store.create_deployment(_dep("web", "staging"))
    swapped = {d.slot: d for d in store.swap_slots("web")}
    assert swapped["production"].id == staging.id and swapped["staging"].id == prod.id
    assert swapped["production"].revision == staging.revision + 1
    store.delete_deployment(prod.id, expect_revision=swapped["staging"].revision)
    _raises(ConflictError, lambda: store.swap_slots("web"), "a swap with an empty staging slot")
    _raises(NotFoundError, lambda: store.get_deployment_by_id(prod.id), "a deleted deployment")


def check_swap_moves_staging_alone(store: Store) -> None:
    store.create_service(ServiceRecord("solo"))
    staging = store.create_deployment(_dep("solo", "staging"))
    (only,) = store.swap_slots("solo")
    assert only.id == staging.id and only.slot == "production"
    _raises(ConflictError, lambda: store.swap_slots("solo"), "a swap with no staging")


def check_packages(store: Store) -> None:
    info = store.put_package(b"PK\x03\x04 hello")
    assert info.digest.startswith("sha256:") and len(info.digest) == 71 and info.size == 10
    again = store.put_package(b"PK\x03\x04 hello")
    assert again.digest == info.digest, "the same bytes give the same digest, stored once"
    assert store.get_package(info.digest) == b"PK\x03\x04 hello"
    _raises(NotFoundError, lambda: store.get_package("sha256:" + "1" * 64), "a missing package")
    _raises(InputError, lambda: store.get_package("md5:abc"), "a malformed digest")


def check_operations(store: Store) -> None:
    op = store.create_operation(
        OperationRecord(id="", kind="CreateDeployment", service="web", request={"slot": "staging"})
    )
    assert op.status is OperationStatus.IN_PROGRESS and len(op.id) == 32
    assert [o.id for o in store.list_operations(status=OperationStatus.IN_PROGRESS)] == [op.id]
    done = store.finish_operation(
        op.id, OperationStatus.FAILED, http_status=409, error_code="Conflict", error_message="no."
    )
    assert (done.status, done.error_code, done.http_status) == (
        OperationStatus.FAILED,
        "Conflict",
        409,
    )
    assert store.get_operation(op.id) == done
    _raises(
        ConflictError, lambda: store.finish_operation(op.id, OperationStatus.SUCCEEDED), "twice"
    )
    _raises(NotFoundError, lambda: store.get_operation("nope"), "a missing operation")
    assert store.list_operations(status=OperationStatus.IN_PROGRESS) == []
    assert [o.id for o in store.list_operations(service="web")] == [op.id]


def check_events(store: Store) -> None:
    first = store.append_event("web", "swap.done", slot="production", fields={"took_ms": 3})
    store.append_event("other", "instance.started")
    second = store.append_event("web", "instance.started", slot="staging", deployment_id="d")
    assert second.seq > first.seq
    assert [e.name for e in store.list_events("web")] == ["swap.done", "instance.started"]
    assert [e.seq for e in store.list_events("web", after=first.seq)] == [second.seq]
    assert [e.name for e in store.list_events("web", slot="production")] == ["swap.done"]
    assert store.list_events("web")[0].fields == {"took_ms": 3}


def check_certificates(store: Store) -> None:
    store.create_service(ServiceRecord("certs"))
    store.put_certificate(CertificateRecord("certs", "ab12", "sha1", "PEM"))
    assert [c.thumbprint for c in store.list_certificates("certs")] == ["AB12"]
    store.delete_certificate("certs", "AB12")
    _raises(NotFoundError, lambda: store.delete_certificate("certs", "AB12"), "deleting twice")


def check_autoscale(store: Store) -> None:
    store.create_service(ServiceRecord("scaled"))
    setting = {"capacity": {"minimum": 1, "maximum": 3, "default": 1}, "rules": []}
    _raises(
        NotFoundError,
        lambda: store.put_autoscale(AutoscaleRecord("ghost", "production", "Web", setting)),
        "a setting of a missing service",
    )
    _raises(
        InputError,
        lambda: store.put_autoscale(AutoscaleRecord("scaled", "canary", "Web", setting)),
        "a setting of a bad slot",
    )
    put = store.put_autoscale(AutoscaleRecord("scaled", "production", "Web", setting))
    assert put.updated_at > 0, "put_autoscale stamps updated_at"
    assert store.get_autoscale("scaled", "production", "Web") == put
    wider = {**setting, "capacity": {"minimum": 1, "maximum": 5, "default": 2}}
    store.put_autoscale(AutoscaleRecord("scaled", "production", "Web", wider))
    store.put_autoscale(AutoscaleRecord("scaled", "staging", "Web", setting))
    assert store.get_autoscale("scaled", "production", "Web").document == wider, "a put replaces"
    assert [(a.slot, a.role) for a in store.list_autoscale("scaled")] == [
        ("production", "Web"),
        ("staging", "Web"),
    ]
    assert [a.service for a in store.list_autoscale()] == ["scaled", "scaled"]
    _raises(
        NotFoundError, lambda: store.get_autoscale("scaled", "production", "Api"), "another role"
    )
    store.delete_autoscale("scaled", "staging", "Web")
    _raises(
        NotFoundError,
        lambda: store.delete_autoscale("scaled", "staging", "Web"),
        "deleting a setting twice",
    )
    store.delete_service("scaled")
    assert store.list_autoscale() == [], "deleting a service deletes its settings"


def check_controller_state(store: Store) -> None:
    store.set_controller_state({"ledger/d1/Web_IN_0": "a.1", "ledger/d1/Web_IN_1": "a.1", "x": "y"})
    assert store.get_controller_state("ledger/") == {
        "ledger/d1/Web_IN_0": "a.1",
        "ledger/d1/Web_IN_1": "a.1",
    }
    store.set_controller_state({"ledger/d1/Web_IN_0": "b.2", "ledger/d1/Web_IN_1": None})
    assert store.get_controller_state("ledger/") == {"ledger/d1/Web_IN_0": "b.2"}
    assert store.get_controller_state() == {"ledger/d1/Web_IN_0": "b.2", "x": "y"}


def check_durability(store: Store, reopen: Reopen) -> None:
    store.create_service(ServiceRecord("keep"))
    dep = store.create_deployment(_dep("keep", "production"))
    op = store.create_operation(OperationRecord(id="", kind="Swap", service="keep"))
    store.append_event("keep", "swap.done")
    info = store.put_package(b"bytes")
    again = reopen(store)
    try:
        assert again.get_deployment_by_id(dep.id) == dep
        assert again.get_operation(op.id).status is OperationStatus.IN_PROGRESS
        assert [e.name for e in again.list_events("keep")] == ["swap.done"]
        assert again.get_package(info.digest) == b"bytes"
    finally:
        again.close()


CHECKS: list[Callable[[Store], None]] = [
    check_services,
    check_deployments,
    check_swap_moves_staging_alone,
    check_packages,
    check_operations,
    check_events,
    check_certificates,
    check_autoscale,
    check_controller_state,
]
