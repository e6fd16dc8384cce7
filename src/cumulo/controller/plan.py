"""A Plan: the typed actions one reconcile pass asks for, in the order they must be applied.

``reconcile`` only *returns* a Plan; ``controller.apply`` carries it out through the host-agent
and load-balancer ports and the store. Route changes come first, so an instance leaves the load
balancer before it is stopped or recycled; walk changes come last and are written to the store
with a compare-and-set on the deployment's revision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from cumulo.controller.records import DomainState, RoleVersion, ServiceRoutes


class StopReason(enum.StrEnum):
    SCALE_IN = "scale-in"
    """The instance's index is no longer wanted (instance count lowered or instance deleted)."""
    DUPLICATE = "duplicate"
    """The same instance runs on two hosts (a lost host came back); the other copy stays."""
    DEPLOYMENT_REMOVED = "deployment-removed"
    SUSPENDED = "suspended"


class RecycleReason(enum.StrEnum):
    UPGRADE = "upgrade"
    """A new package or a change that cannot apply in place."""
    SETTINGS = "settings"
    """New setting values for an instance with no SDK connection (our extension: documented)."""


@dataclass(frozen=True)
class StartInstance:
    deployment_id: str
    service: str
    role: str
    instance_id: str
    host: str
    update_domain: int
    fault_domain: int
    version: RoleVersion

    destructive = False


@dataclass(frozen=True)
class StopInstance:
    deployment_id: str
    instance_id: str
    host: str
    reason: StopReason

    destructive = True


@dataclass(frozen=True)
class RecycleInstance:
    """Stop the instance and start it again with ``version`` (same id, host, UD and FD)."""

    deployment_id: str
    instance_id: str
    host: str
    version: RoleVersion
    reason: RecycleReason

    destructive = True


@dataclass(frozen=True)
class UpdateSettings:
    """Deliver new setting values in place through the SDK (``changing``/``changed``)."""

    deployment_id: str
    instance_id: str
    host: str
    version: RoleVersion

    destructive = False


@dataclass(frozen=True)
class SetRoutes:
    """Replace both route tables of a service's VIPs in one load-balancer call."""

    routes: ServiceRoutes

    destructive = False


@dataclass(frozen=True)
class AdvanceWalk:
    """Move a walk to ``domain``/``state`` (store write, guarded by ``revision``)."""

    deployment_id: str
    revision: int
    domain: int
    state: DomainState

    destructive = False


@dataclass(frozen=True)
class FinishWalk:
    deployment_id: str
    revision: int

    destructive = False


Action = (
    StartInstance
    | StopInstance
    | RecycleInstance
    | UpdateSettings
    | SetRoutes
    | AdvanceWalk
    | FinishWalk
)

_T = TypeVar("_T")

INSTANCE_ACTIONS = (StartInstance, StopInstance, RecycleInstance, UpdateSettings)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    """Look again after this many seconds even if nothing changes (None: on change only)."""
    waiting: tuple[str, ...] = ()
    """Sentences saying what the plan holds back and why (shown in events and ``--plan``)."""

    @property
    def empty(self) -> bool:
        return not self.actions

    def of_type(self, kind: type[_T]) -> list[_T]:
        return [a for a in self.actions if isinstance(a, kind)]

    def destructive(self) -> list[Action]:
        return [a for a in self.actions if a.destructive]

    def describe(self) -> list[str]:
        """One line per action, for logs and ``--plan``."""
        return [describe(a) for a in self.actions]


def describe(action: Action) -> str:
    match action:
        case StartInstance():
            return (
                f"start {action.instance_id} on {action.host} "
                f"(UD {action.update_domain}, FD {action.fault_domain})"
            )
        case StopInstance():
            return f"stop {action.instance_id} on {action.host} ({action.reason})"
        case RecycleInstance():
            return f"recycle {action.instance_id} on {action.host} ({action.reason})"
        case UpdateSettings():
            return f"apply settings in place to {action.instance_id} on {action.host}"
        case SetRoutes():
            return f"set routes of service {action.routes.service}"
        case AdvanceWalk():
            return f"walk {action.deployment_id} to UD {action.domain} ({action.state})"
        case FinishWalk():
            return f"finish the walk of {action.deployment_id}"
