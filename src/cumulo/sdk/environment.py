"""``RoleEnvironment``: what a role instance knows about itself, its deployment and its peers.

Modelled on Azure's ``Microsoft.WindowsAzure.ServiceRuntime.RoleEnvironment``. Outside cumulo (no
``CUMULO_AGENT_SOCKET``, or the agent cannot be reached) ``is_available`` is False and every other
member raises ``RoleEnvironmentError`` with a sentence saying why.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cumulo.sdk import _transport


class RoleEnvironmentError(RuntimeError):
    """The role environment is not available, or a name asked for does not exist."""


@dataclass(frozen=True)
class RoleInstanceEndpoint:
    name: str
    protocol: str
    address: str
    port: int
    public_port: int | None = None

    @property
    def ip_endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class RoleInstance:
    id: str
    role_name: str
    update_domain: int
    fault_domain: int
    instance_endpoints: dict[str, RoleInstanceEndpoint] = field(default_factory=dict)


@dataclass(frozen=True)
class Role:
    name: str
    instances: tuple[RoleInstance, ...]


@dataclass(frozen=True)
class LocalResource:
    name: str
    root_path: str
    maximum_size_in_megabytes: int


@dataclass(frozen=True)
class ConfigurationSettingChange:
    configuration_setting_name: str


@dataclass(frozen=True)
class TopologyChange:
    role_name: str


Change = ConfigurationSettingChange | TopologyChange


class ChangingEventArgs:
    """Passed to ``changing`` handlers; ``cancel = True`` takes the change offline (recycle)."""

    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes
        self.cancel = False


class ChangedEventArgs:
    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes


class StatusCheckEventArgs:
    """Passed to ``status_check`` handlers; ``set_busy()`` keeps the instance out of rotation."""

    def __init__(self) -> None:
        self.busy = False

    def set_busy(self) -> None:
        self.busy = True


class StoppingEventArgs:
    pass


class Event:
    """A list of handlers: ``RoleEnvironment.changing += handler`` or ``.add(handler)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[Callable[[Any], None]] = []

    def add(self, handler: Callable[[Any], None]) -> None:
        self._handlers.append(handler)

    def remove(self, handler: Callable[[Any], None]) -> None:
        self._handlers.remove(handler)

    def __iadd__(self, handler: Callable[[Any], None]) -> Event:
        self.add(handler)
        return self

    def __isub__(self, handler: Callable[[Any], None]) -> Event:
        self.remove(handler)
        return self

    def fire(self, args: Any) -> None:
        for handler in list(self._handlers):
            handler(args)


def _parse_changes(raw: list[dict[str, Any]]) -> list[Change]:
    changes: list[Change] = []
    for item in raw:
        if item.get("kind") == "setting":
            changes.append(ConfigurationSettingChange(str(item.get("name"))))
        elif item.get("kind") == "topology":
            changes.append(TopologyChange(str(item.get("role"))))
    return changes


def _instance(raw: dict[str, Any]) -> RoleInstance:
    endpoints = {
        name: RoleInstanceEndpoint(
            name, e.get("protocol", "tcp"), e["address"], int(e["port"]), e.get("public_port")
        )
        for name, e in (raw.get("endpoints") or {}).items()
    }
    return RoleInstance(
        raw["id"], raw["role"], int(raw["update_domain"]), int(raw["fault_domain"]), endpoints
    )


_CLOSED = (
    "The role environment is not available: the agent closed the connection "
    "(only processes of the instance may use it)."
)


class _RoleEnvironment:
    """The process-wide role environment (use the ``RoleEnvironment`` object)."""

    def __init__(self) -> None:
        self.changing = Event("changing")
        self.changed = Event("changed")
        self.stopping = Event("stopping")
        self.status_check = Event("status_check")
        self._lock = threading.Lock()
        self._conn: _transport.Connection | None = None
        self._env: dict[str, Any] | None = None
        self._env_ready = threading.Event()
        self._failed: str | None = None
        self._on_stop: Callable[[], None] | None = None
        self._after_stop: Callable[[], None] | None = None
        self._entry_point = False
        self._reconnecting = False

    # -- connection ---------------------------------------------------------------------------
    def _connect(self, *, entry_point: bool = False, timeout: float = 10.0) -> bool:
        with self._lock:
            if self._conn is not None and not self._conn.closed.is_set():
                return True
            path = _transport.socket_path()
            if path is None:
                self._failed = (
                    f"The role environment is not available: {_transport.SOCKET_ENV} is not set "
                    "(this process does not run inside a cumulo role instance)."
                )
                return False
            try:
                self._env_ready.clear()
                self._entry_point = self._entry_point or entry_point
                self._conn = _transport.Connection(
                    path, self._dispatch, timeout=timeout, on_close=self._connection_lost
                )
                self._conn.send(
                    {"op": "hello", "pid": os.getpid(), "entry_point": self._entry_point}
                )
            except (BrokenPipeError, ConnectionResetError):
                self._failed = _CLOSED
                self._conn = None
                return False
            except OSError as exc:
                self._failed = (
                    f"The role environment is not available: cannot reach the agent at "
                    f"{path} ({exc.strerror or exc})."
                )
                self._conn = None
                return False
        conn = self._conn
        deadline = time.monotonic() + timeout
        while not self._env_ready.wait(0.02):
            if conn is not None and conn.closed.is_set():
                self._failed = _CLOSED
                return False
            if time.monotonic() > deadline:
                self._failed = "The role environment is not available: the agent did not answer."
                return False
        self._failed = None
        return True

    def _connection_lost(self) -> None:
        """The agent went away (e.g. it restarts): reconnect in the background, for ever."""
        if self._reconnecting or self._env is None:
            return
        self._reconnecting = True

        def reconnect() -> None:
            delay = 0.1
            try:
                while True:
                    threading.Event().wait(delay)
                    if self._connect(timeout=5.0):
                        return
                    delay = min(2.0, delay * 2)
            finally:
                self._reconnecting = False

        threading.Thread(target=reconnect, name="cumulo-sdk-reconnect", daemon=True).start()

    def _require(self) -> dict[str, Any]:
        if self._env is None and not self._connect():
            raise RoleEnvironmentError(self._failed or "The role environment is not available.")
        assert self._env is not None
        return self._env

    def _send(self, message: dict[str, Any]) -> None:
        self._require()
        assert self._conn is not None
        self._conn.send(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "environment":
            self._env = message.get("env") or {}
            self._env_ready.set()
        elif kind == "status_check":
            args = StatusCheckEventArgs()
            try:
                self.status_check.fire(args)
            finally:
                self._reply({"op": "status", "id": message.get("id"), "busy": args.busy})
        elif kind == "changing":
            changing = ChangingEventArgs(_parse_changes(message.get("changes") or []))
            try:
                self.changing.fire(changing)
            finally:
                self._reply(
                    {"op": "changing_result", "id": message.get("id"), "cancel": changing.cancel}
                )
        elif kind == "changed":
            if isinstance(message.get("env"), dict):
                self._env = message["env"]
            self.changed.fire(ChangedEventArgs(_parse_changes(message.get("changes") or [])))
        elif kind == "stopping":
            try:
                self.stopping.fire(StoppingEventArgs())
                if self._on_stop is not None:
                    self._on_stop()
            finally:
                self._reply({"op": "stopping_done", "id": message.get("id")})
                if self._after_stop is not None:
                    self._after_stop()

    def _reply(self, message: dict[str, Any]) -> None:
        try:
            if self._conn is not None:
                self._conn.send(message)
        except OSError:
            pass

    # -- Azure's members ----------------------------------------------------------------------
    @property
    def is_available(self) -> bool:
        if self._env is not None and self._conn is not None and not self._conn.closed.is_set():
            return True
        return self._connect()

    @property
    def is_emulated(self) -> bool:
        return bool(self._require().get("emulated", False))

    @property
    def deployment_id(self) -> str:
        return str(self._require()["deployment_id"])

    @property
    def current_role_instance(self) -> RoleInstance:
        return _instance(self._require()["current"])

    @property
    def roles(self) -> dict[str, Role]:
        env = self._require()
        return {
            name: Role(name, tuple(_instance(i) for i in instances))
            for name, instances in (env.get("roles") or {}).items()
        }

    def get_configuration_setting_value(self, name: str) -> str:
        settings = self._require().get("settings") or {}
        if name not in settings:
            raise RoleEnvironmentError(
                f"The configuration setting '{name}' is not defined for role "
                f"'{self._require()['current']['role']}'."
            )
        return str(settings[name])

    def get_local_resource(self, name: str) -> LocalResource:
        resources = self._require().get("local_resources") or {}
        if name not in resources:
            raise RoleEnvironmentError(
                f"The local resource '{name}' is not defined for role "
                f"'{self._require()['current']['role']}'."
            )
        r = resources[name]
        return LocalResource(name, str(r["path"]), int(r["size_mb"]))

    def request_recycle(self) -> None:
        """Ask the agent to stop and restart this instance (Stopping and OnStop are raised)."""
        self._send({"op": "recycle"})


RoleEnvironment = _RoleEnvironment()
