"""The service's SQLite database: WAL mode, and the acknowledged write synced by default.

``durability="full"`` (the default) runs ``synchronous=FULL``: every acknowledged write has been
fsynced to the WAL before the response leaves, so kill -9 (or power loss) loses nothing
acknowledged. ``"normal"`` syncs only at checkpoints: an OS crash or power loss may lose the last
writes, a killed process loses nothing. ``"off"`` never syncs (tests of throughput only).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DURABILITY = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}


class Database:
    """One connection, used only from the event-loop thread."""

    def __init__(self, path: Path, durability: str = "full") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA cache_size=-65536")
        self.durability = durability
        self._depth = 0

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT); nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
