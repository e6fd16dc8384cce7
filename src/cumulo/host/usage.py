"""What an instance uses when its cgroups cannot say: CPU time and resident memory of its
processes, read from ``/proc``.

Role processes start in a session of their own (see ``spawner``), so an instance's processes are
the members of its main process's session; for a process that leads no session, its process tree.
CPU time is user + system, including children that exited and were reaped (``cutime``,
``cstime``), so the counter never goes back while the instance lives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

PROC = Path("/proc")


def _tick() -> float:
    return float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def process_usage(pids: Sequence[int], proc: Path = PROC) -> dict[int, dict[str, float]]:
    """``{pid: {"cpu_seconds", "memory_mb"}}`` of each ``pid``'s session (or tree), in one scan
    of ``proc``; a pid that is gone is left out."""
    tick = _tick()
    page_mb = os.sysconf("SC_PAGE_SIZE") / (1 << 20) if hasattr(os, "sysconf") else 4096 / (1 << 20)
    stats: dict[int, tuple[int, int, float, float]] = {}  # pid -> ppid, session, cpu s, rss MiB
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[-1].split()
        try:
            ppid, session = int(fields[1]), int(fields[3])
            used = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
            rss = int(fields[21]) * page_mb
        except (IndexError, ValueError):
            continue
        stats[int(entry.name)] = (ppid, session, used, rss)
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, dict[str, float]] = {}
    for root in pids:
        if root not in stats:
            continue
        if stats[root][1] == root:
            members = [p for p, (_, session, _, _) in stats.items() if session == root]
        else:
            members, todo = [], [root]
            while todo:
                p = todo.pop()
                members.append(p)
                todo.extend(children.get(p, ()))
        out[root] = {
            "cpu_seconds": round(sum(stats[p][2] for p in members), 3),
            "memory_mb": round(sum(stats[p][3] for p in members), 1),
        }
    return out
