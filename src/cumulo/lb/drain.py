"""Drain bookkeeping: which open connections belong to instances taken out of rotation, and when
they must be closed.

Why: an instance that leaves rotation (not Ready, probe down, removed from the table) keeps its
open connections until they close by themselves or the drain timeout passes. The proxy tells
this book when connections open and close and which backends are in rotation; the book answers
which connections are overdue. Pure (time is passed in), so it is property-tested.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

Key = Hashable  # a backend identity
Conn = Hashable  # a connection identity


@dataclass
class DrainBook:
    open: dict[Key, set[Conn]] = field(default_factory=dict)
    deadlines: dict[Key, float] = field(default_factory=dict)

    def opened(self, key: Key, conn: Conn) -> None:
        self.open.setdefault(key, set()).add(conn)

    def closed(self, key: Key, conn: Conn) -> None:
        conns = self.open.get(key)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self.open[key]
            self.deadlines.pop(key, None)

    def active(self, key: Key) -> int:
        return len(self.open.get(key, ()))

    def update(self, in_rotation: Iterable[Key], now: float, timeout: float) -> None:
        """Record the backends now in rotation: the others with open connections start draining
        (deadline ``now + timeout``, kept if already draining); those back in rotation stop."""
        rotation = set(in_rotation)
        for key in list(self.deadlines):
            if key in rotation:
                del self.deadlines[key]
        for key in self.open:
            if key not in rotation and key not in self.deadlines:
                self.deadlines[key] = now + timeout

    def draining(self) -> dict[Key, float]:
        return dict(self.deadlines)

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)

    def expired(self, now: float) -> list[Conn]:
        """Connections whose drain deadline has passed (the caller closes them, then reports
        ``closed``)."""
        due: list[Conn] = []
        for key, deadline in self.deadlines.items():
            if deadline <= now:
                due.extend(self.open.get(key, ()))
        return due
