"""The desired-state ``Store`` protocol: what every backend offers the controller and the API.

Backends: ``SqliteStore`` (the default, one file in the data directory). Each backend must pass
``cumulo.storage.store.conformance.check_store`` — one test body for all of them (Nomad's
``testDB``).

Semantics every backend keeps:
- names: a missing thing raises ``NotFoundError``; creating what exists raises ``ConflictError``;
- deployments: one per (service, slot); ``revision`` starts at 1 and rises by one on each write;
  a write with ``expect_revision`` that does not match raises ``PreconditionFailed`` (HTTP 412);
- ``swap_slots`` exchanges production and staging in one transaction (staging alone moves to
  production);
- packages are kept by content digest (``sha256:<hex>``), written once;
- operations and events survive a restart; events are numbered in order (``seq``);
- controller state is a flat key -> text map; ``None`` deletes; one call is one transaction;
- autoscale settings: one per (service, slot, role), replaced by a put; deleting a service
  deletes its settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cumulo.storage.store.records import (
    AutoscaleRecord,
    CertificateRecord,
    DeploymentRecord,
    EventRecord,
    OperationRecord,
    OperationStatus,
    PackageInfo,
    ServiceRecord,
)


class Store(Protocol):
    # services
    def create_service(self, service: ServiceRecord) -> ServiceRecord: ...
    def get_service(self, name: str) -> ServiceRecord: ...
    def list_services(self) -> list[ServiceRecord]: ...
    def delete_service(self, name: str) -> None: ...

    # deployments
    def create_deployment(self, deployment: DeploymentRecord) -> DeploymentRecord: ...
    def get_deployment(self, service: str, slot: str) -> DeploymentRecord: ...
    def get_deployment_by_id(self, deployment_id: str) -> DeploymentRecord: ...
    def list_deployments(self, service: str | None = None) -> list[DeploymentRecord]: ...
    def update_deployment(
        self,
        deployment_id: str,
        *,
        expect_revision: int | None = None,
        status: str | None = None,
        document: Mapping[str, Any] | None = None,
        configuration: str | None = None,
        package_digest: str | None = None,
    ) -> DeploymentRecord: ...
    def delete_deployment(
        self, deployment_id: str, *, expect_revision: int | None = None
    ) -> None: ...
    def swap_slots(self, service: str) -> list[DeploymentRecord]: ...

    # packages
    def put_package(self, data: bytes) -> PackageInfo: ...
    def get_package(self, digest: str) -> bytes: ...
    def package_info(self, digest: str) -> PackageInfo: ...

    # operations
    def create_operation(self, operation: OperationRecord) -> OperationRecord: ...
    def get_operation(self, operation_id: str) -> OperationRecord: ...
    def list_operations(
        self, *, service: str | None = None, status: OperationStatus | None = None
    ) -> list[OperationRecord]: ...
    def finish_operation(
        self,
        operation_id: str,
        status: OperationStatus,
        *,
        http_status: int = 200,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> OperationRecord: ...

    # events
    def append_event(
        self,
        service: str,
        name: str,
        *,
        slot: str | None = None,
        deployment_id: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> EventRecord: ...
    def list_events(
        self,
        service: str,
        *,
        after: int = 0,
        slot: str | None = None,
        limit: int = 1000,
    ) -> Sequence[EventRecord]: ...

    # the controller's own small state (e.g. which spec version each instance was given)
    def get_controller_state(self, prefix: str = "") -> dict[str, str]: ...
    def set_controller_state(self, items: Mapping[str, str | None]) -> None: ...

    # certificates
    def put_certificate(self, certificate: CertificateRecord) -> CertificateRecord: ...
    def list_certificates(self, service: str) -> list[CertificateRecord]: ...
    def delete_certificate(self, service: str, thumbprint: str) -> None: ...

    # autoscale settings (per service, slot and role)
    def put_autoscale(self, record: AutoscaleRecord) -> AutoscaleRecord: ...
    def get_autoscale(self, service: str, slot: str, role: str) -> AutoscaleRecord: ...
    def list_autoscale(self, service: str | None = None) -> list[AutoscaleRecord]: ...
    def delete_autoscale(self, service: str, slot: str, role: str) -> None: ...

    def close(self) -> None: ...
