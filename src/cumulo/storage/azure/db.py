"""The service's SQLite database: WAL mode, and the acknowledged write synced by default.

``durability="full"`` (the default): every acknowledged write has been fsynced to the WAL before
the response leaves, so kill -9 (or power loss) loses nothing acknowledged. It is done as a
*group commit*: transactions commit with ``synchronous=NORMAL`` (no sync at commit; checkpoints
still sync the WAL before copying it into the database and the database before the WAL is
reused, so the file is never corrupt), the commit marks the database ``unsynced``, and the HTTP
layer holds every response back until :meth:`Database.sync` has run one ``fdatasync`` of the WAL
(``http.CommitGate``). Writers of one event-loop iteration share that sync; a lone writer pays
exactly what ``synchronous=FULL`` would. ``"normal"`` syncs only at checkpoints: an OS crash or
power loss may lose the last writes, a killed process loses nothing. ``"off"`` never syncs
(tests of throughput only).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DURABILITY = {"full": "NORMAL", "normal": "NORMAL", "off": "OFF"}
"""The SQLite ``synchronous`` setting of each durability level (``full`` adds :meth:`sync`)."""


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
        self.group_commit = durability == "full"
        """True when commits leave the WAL to :meth:`sync` (see the module docstring)."""
        self.unsynced = False
        """A committed write has not reached the disk yet (only with ``group_commit``)."""
        self.syncs = 0
        """How many WAL syncs :meth:`sync` has done (tests and benchmarks read it)."""
        self._wal_fd: int | None = None
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
        conn = self.conn
        changes = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield conn
        except BaseException:
            self._depth = 0
            conn.execute("ROLLBACK")
            raise
        self._depth = 0
        conn.execute("COMMIT")
        if self.group_commit and conn.total_changes != changes:
            self.unsynced = True

    def sync(self) -> None:
        """Make every committed write durable: one ``fdatasync`` of the WAL (if any is unsynced).

        Raises OSError when the disk refuses; the writes then stay marked unsynced.
        """
        if not self.unsynced:
            return
        fd = self._wal_fd
        if fd is None or os.fstat(fd).st_nlink == 0:  # first sync, or the WAL was replaced
            if fd is not None:
                os.close(fd)
                self._wal_fd = None
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            self._wal_fd = fd
        os.fdatasync(fd)
        self.syncs += 1
        self.unsynced = False

    def close(self) -> None:
        self.conn.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
