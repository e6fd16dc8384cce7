"""The wire between role processes and their guest agent (standard library only).

Transport: a Unix stream socket whose path is in ``CUMULO_AGENT_SOCKET`` (inside the instance
directory, reachable only by the instance's user). Every message is one JSON object on one line
(UTF-8, ``\\n``-terminated). Any number of processes of one instance may connect at once; each gets
every push.

Role -> agent (``op``):
    {"op": "hello", "pid": 123, "entry_point": true}   first message; answered by "environment"
    {"op": "started"}                                   OnStart returned true: the instance is Ready
    {"op": "status", "id": 7, "busy": false}            answer to status_check (also the heartbeat)
    {"op": "changing_result", "id": 8, "cancel": true}  answer to changing (cancel => recycle)
    {"op": "stopping_done", "id": 9}                    Stopping handlers and OnStop have returned
    {"op": "recycle"}                                   RoleEnvironment.request_recycle()

Agent -> role (``type``):
    {"type": "environment", "env": {...}}               the role environment snapshot (below)
    {"type": "status_check", "id": 7}                   every heartbeat interval
    {"type": "changing", "id": 8, "changes": [...]}     before a setting/topology change
    {"type": "changed", "changes": [...], "env": {...}} after it was applied (new snapshot)
    {"type": "stopping", "id": 9}                       the instance is out of rotation, stopping

The environment snapshot: ``deployment_id``, ``emulated``, ``current`` (``id``, ``role``,
``update_domain``, ``fault_domain``, ``endpoints``: name -> ``{protocol, address, port,
public_port}``), ``roles`` (name -> list of instances shaped like ``current``, internal endpoints
only), ``settings`` (name -> value), ``local_resources`` (name -> ``{path, size_mb}``).
Changes are ``{"kind": "setting", "name": ...}`` or ``{"kind": "topology", "role": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

SOCKET_ENV = "CUMULO_AGENT_SOCKET"

Handler = Callable[[dict[str, Any]], None]


class Connection:
    """One connection to the agent with a reader thread that dispatches pushes to ``handler``."""

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        timeout: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._sock.settimeout(None)
        self._handler = handler
        self._on_close = on_close
        self._lock = threading.Lock()
        self._file = self._sock.makefile("rb")
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="cumulo-sdk-agent", daemon=True)
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._sock.sendall(data)

    def _read(self) -> None:
        try:
            for line in self._file:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._handler(message)
        except OSError:
            pass
        finally:
            self.closed.set()
            if self._on_close is not None:
                self._on_close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def socket_path() -> str | None:
    path = os.environ.get(SOCKET_ENV)
    return path or None
