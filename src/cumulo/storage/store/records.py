"""Records the desired-state store keeps. Plain, frozen, JSON-friendly.

The store knows nothing of the controller's types: a deployment's desired state travels as a
JSON ``document`` the controller writes and reads (``controller.documents``); the store adds the
identity, the slot, the revision (its optimistic-concurrency token, shown as the ETag) and the
times.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cumulo.errors import ConflictError


class PreconditionFailed(ConflictError):
    """A write that names a revision (If-Match) the record no longer has (HTTP 412)."""

    code = "PreconditionFailed"
    http_status = 412


class OperationStatus(enum.StrEnum):
    """Azure's operation statuses."""

    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    label: str = ""
    description: str = ""
    created_at: float = 0.0


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    """The private id (Azure's ``PrivateID``): 32 hex characters, never reused."""
    service: str
    slot: str
    name: str
    """The deployment name the user gave (Azure's ``Name``); defaults to the id."""
    status: str
    """``Running``, ``Suspended`` … (Azure's names)."""
    package_digest: str
    configuration: str
    """The .cscfg text as deployed (or as last changed)."""
    document: Mapping[str, Any] = field(default_factory=dict)
    """The controller's desired state of the deployment (JSON)."""
    label: str = ""
    revision: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def etag(self) -> str:
        return f'"{self.id}.{self.revision}"'


@dataclass(frozen=True)
class PackageInfo:
    digest: str
    """``sha256:<hex>`` of the package bytes."""
    size: int
    created_at: float = 0.0


@dataclass(frozen=True)
class OperationRecord:
    id: str
    kind: str
    """What was asked: ``CreateDeployment``, ``Swap``, ``UpgradeDeployment`` …"""
    service: str
    slot: str | None = None
    deployment_id: str | None = None
    status: OperationStatus = OperationStatus.IN_PROGRESS
    http_status: int = 202
    error_code: str | None = None
    error_message: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    """What the controller needs to finish the operation after a restart."""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class EventRecord:
    seq: int
    time: float
    service: str
    name: str
    """A structured event name (``instance.started``, ``swap.done`` …)."""
    slot: str | None = None
    deployment_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CertificateRecord:
    service: str
    thumbprint: str
    """Uppercase hex SHA-1 of the DER certificate, as a .cscfg names it."""
    algorithm: str
    pem: str
    """Certificate and (if any) private key, PEM."""
    created_at: float = 0.0


@dataclass(frozen=True)
class AutoscaleRecord:
    """The autoscale setting of one role in one slot (``controller.autoscale`` reads it)."""

    service: str
    slot: str
    role: str
    document: Mapping[str, Any] = field(default_factory=dict)
    """The setting as JSON (capacity and rules), already validated by the controller."""
    updated_at: float = 0.0
