"""Benchmark: 200 tiny instances on one machine. Goals: a reconcile pass < 50 ms, the
platform's memory < 2 MB per instance.

Run: ``.venv/bin/python bench/scale.py [--instances 200]``. The embedded platform runs in this
process (controller + API) with one host agent; the service is one worker role of
``--instances`` instances in all, in services of 50 (Azure's limit per deployment, which cumulo
enforces), whose program is ``sleep`` (the smallest process there is, so what is measured is the
platform, not the role). After every instance is ReadyRole the script leaves the
platform idle for ``--idle`` seconds and reports:

- the controller's whole pass (``Controller.tick``: observe the host over HTTP, ingest events,
  reconcile, apply, operations), timed on each pass;
- the pure ``reconcile(desired, observed, now)`` on the same state, called 50 times;
- the platform's memory per instance: the resident memory (VmRSS) of the platform's own processes
  (this process, the host agent, any load balancer) with the instances running, minus the same
  before the deployment, divided by the instance count. The role processes are not counted.

The machine is shared: numbers are noisy (``uptime`` is printed).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _platform as bp
from cumulo.controller.reconcile import reconcile


def memory_kb(p: bp.Running) -> dict[str, int]:
    return {name: bp.rss_kb(pid) for name, pid in p.component_pids().items()}


async def _pure_reconcile(p: bp.Running, rounds: int) -> list[float]:
    controller = p.platform.controller
    _records, desired = controller._desired()
    now = controller.clock.wall()
    observed = controller._observed_for_reconcile(desired, now)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        reconcile(desired, observed, now=now, settings=controller.settings.reconcile)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--idle", type=float, default=20.0)
    args = parser.parse_args()
    n = args.instances
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-scale-"))
    sizes = [min(50, n - k) for k in range(0, n, 50)]
    sources = [
        bp.tiny_service(work / f"svc{k}", f"scale{k}", worker=size) for k, size in enumerate(sizes)
    ]
    ticks: list[float] = []
    with bp.platform(tick_times=ticks) as p:
        time.sleep(2)
        before = memory_kb(p)
        started = time.perf_counter()
        for k, src in enumerate(sources):
            p.cli("deploy", f"scale{k}", str(src), "--timeout", "600")
        took = time.perf_counter() - started
        print(f"deploy {n} instances ({len(sources)} services) until all ReadyRole: {took:.1f} s")
        ticks.clear()
        time.sleep(args.idle)
        idle = sorted(ticks)
        pure = sorted(p.call(_pure_reconcile(p, 50)))
        after = memory_kb(p)
        running = len(p.instance_pids())
    shutil.rmtree(work, ignore_errors=True)
    print(f"uptime: {bp.uptime()}")
    for name in after:
        print(f"  {name}: {before.get(name, 0) / 1024:.1f} MB -> {after[name] / 1024:.1f} MB")
    per_instance = (sum(after.values()) - sum(before.values())) / 1024 / n
    assert running == n, f"{running} instances running, expected {n}"
    print(
        f"reconcile pass (whole controller tick) at {n} instances: median "
        f"{statistics.median(idle) * 1000:.1f} ms, p95 {idle[int(len(idle) * 0.95)] * 1000:.1f} ms"
        f" over {len(idle)} idle passes; goal < 50 ms"
    )
    print(
        f"reconcile() alone at {n} instances: median {statistics.median(pure) * 1000:.2f} ms, "
        f"max {pure[-1] * 1000:.2f} ms"
    )
    lbs = sum(kb for name, kb in after.items() if name.startswith("lb serve"))
    without_lbs = (sum(after.values()) - lbs - sum(before.values())) / 1024 / n
    print(
        f"platform memory per instance without the per-service load balancers: "
        f"{without_lbs:.2f} MB (controller + API and host agent growth only)"
    )
    print(
        f"platform memory per instance: {per_instance:.2f} MB "
        f"({sum(before.values()) / 1024:.0f} MB -> {sum(after.values()) / 1024:.0f} MB for {n}"
        " instances); goal < 2 MB"
    )


if __name__ == "__main__":
    main()
