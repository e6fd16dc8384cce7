"""The agent's end of the SDK transport (protocol in ``cumulo.sdk._transport``).

One asyncio Unix-socket server per instance. It answers ``hello`` with the environment snapshot,
pushes changes to every connection, correlates replies by id, and tells the guest agent about
``started`` and ``recycle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Peer:
    """One connected role process."""

    pid: int | None
    entry_point: bool
    writer: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write((json.dumps(message, separators=(",", ":")) + "\n").encode())


class Channel:
    def __init__(
        self,
        path: str,
        snapshot: Callable[[], dict[str, Any]],
        on_event: Callable[[str, Peer], None],
        *,
        owner: tuple[int, int] | None = None,
        authorize: Callable[[int, int], bool] | None = None,
    ) -> None:
        self.path = path
        self._authorize = authorize
        self._snapshot = snapshot
        self._on_event = on_event
        self._owner = owner
        self._server: asyncio.AbstractServer | None = None
        self.peers: list[Peer] = []
        self._ids = itertools.count(1)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)
        if self._owner is not None and os.geteuid() == 0:
            os.chown(self.path, *self._owner)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for peer in list(self.peers):
            peer.writer.close()
        self.peers.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer: Peer | None = None
        credentials = peer_credentials(writer)
        if self._authorize is not None and (
            credentials is None or not self._authorize(credentials[0], credentials[1])
        ):
            # Only processes of this instance (its user or the agent's, in its sessions or
            # cgroup: ``authorize(pid, uid)``) may talk to its agent (settings are secrets).
            self._on_event("rejected", Peer(credentials[0] if credentials else None, False, writer))
            writer.close()
            return
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                op = message.get("op")
                if op == "hello":
                    pid = credentials[0] if credentials else message.get("pid")
                    peer = Peer(
                        pid if isinstance(pid, int) else None,
                        bool(message.get("entry_point")),
                        writer,
                    )
                    self.peers.append(peer)
                    peer.send({"type": "environment", "env": self._snapshot()})
                    self._on_event("hello", peer)
                elif peer is None:
                    continue
                elif op in ("status", "changing_result", "stopping_done"):
                    fut = peer.pending.pop(int(message.get("id") or 0), None)
                    if fut is not None and not fut.done():
                        fut.set_result(message)
                elif op in ("started", "recycle"):
                    self._on_event(op, peer)
        except (ConnectionError, OSError):
            pass
        finally:
            if peer is not None:
                with contextlib.suppress(ValueError):
                    self.peers.remove(peer)
                for fut in peer.pending.values():
                    if not fut.done():
                        fut.set_result({"op": "bye"})
                self._on_event("bye", peer)
            writer.close()

    async def request(
        self, peer: Peer, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Send ``message`` with a fresh id; the reply, or None on timeout/disconnect."""
        ident = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        peer.pending[ident] = fut
        try:
            peer.send({**message, "id": ident})
            reply = await asyncio.wait_for(fut, timeout)
        except (TimeoutError, ConnectionError, OSError):
            return None
        finally:
            peer.pending.pop(ident, None)
        return None if reply.get("op") == "bye" else reply

    async def request_all(
        self, message: dict[str, Any], timeout: float
    ) -> list[tuple[Peer, dict[str, Any] | None]]:
        peers = list(self.peers)
        replies = await asyncio.gather(*(self.request(p, message, timeout) for p in peers))
        return list(zip(peers, replies, strict=True))

    def broadcast(self, message: dict[str, Any]) -> None:
        for peer in list(self.peers):
            with contextlib.suppress(ConnectionError, OSError):
                peer.send(message)


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid
