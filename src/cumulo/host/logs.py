"""Per-instance process logs: size-capped copy-truncate rotation and tails.

Processes write straight into ``logs/<name>.log`` (opened with O_APPEND, so they keep writing at
the end after a truncate, and keep logging while the agent restarts). When a file passes
``max_bytes`` it is copied to ``<name>.log.1`` (older ones shift up to ``.keep``) and truncated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def rotate_if_needed(path: Path, max_bytes: int, keep: int) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    if keep > 0:
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with contextlib.suppress(OSError), open(path, "r+b") as f:
        f.truncate(0)
    return True


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path`` (looking at most at its last ``max_bytes``)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:] if lines > 0 else []
