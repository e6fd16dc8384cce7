"""Benchmark: kill -9 an instance; time until its replacement answers through the VIP again.
Goal: < 2 s.

Run: ``.venv/bin/python bench/heal.py [--instances 5]``. The embedded platform runs in this
process with a web role of ``--instances`` instances (a WSGI site answering ``ok INSTANCE``).
Each round kills one instance: kill -9 of its process group (the site host and its workers), each
instance once, so every kill is a first failure and the restart policy waits 0.5 s ±20 % before
the restart. Then, with a new connection per request, it asks the production VIP until an answer
comes from that instance again ("back in rotation"), and notes when the host agent reports the
instance ReadyRole with a new pid. The LB skips a backend that refused a connection for 2 s
(docs/networking.md, passive failures), which bounds the first figure from below. The machine is
shared: numbers are noisy (``uptime`` is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _platform as bp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-heal-"))
    src = bp.tiny_service(work / "svc", "heal", web=args.instances)
    in_rotation: list[float] = []
    host_ready: list[float] = []
    with bp.platform() as p:
        p.cli("deploy", "heal", str(src), "--timeout", "120")
        vip = next(iter(p.client.get_deployment("heal", "production")["vips"].values()))
        url = f"http://{vip}/"
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=5, limits=limits) as http:
            for key, pid in sorted(p.instance_pids().items()):
                instance = key.split("/")[1]
                # The whole instance: its main process and the site's worker processes (its own
                # process group), as a crash of the instance would.
                os.killpg(os.getpgid(pid), signal.SIGKILL)
                killed = time.perf_counter()
                ready_at = None
                while True:
                    answer = http.get(url)
                    assert answer.status_code == 200, answer.text
                    now = time.perf_counter()
                    if ready_at is None:
                        for inst in p.call(p.platform.hosts[0].observe()):
                            fresh = inst["key"] == key and inst.get("pid") not in (None, pid)
                            if fresh and inst.get("state") == "ReadyRole":
                                ready_at = now - killed
                    if answer.text == f"ok {instance}":
                        in_rotation.append(now - killed)
                        host_ready.append(ready_at if ready_at is not None else now - killed)
                        break
                    if now - killed > 30:
                        raise SystemExit(f"{instance} not back in rotation after 30 s")
                print(
                    f"{instance}: ReadyRole on its host after {host_ready[-1]:.2f} s, "
                    f"answering through the VIP after {in_rotation[-1]:.2f} s"
                )
    shutil.rmtree(work, ignore_errors=True)
    print(f"uptime: {bp.uptime()}")
    print(
        f"heal after kill -9 (first failure), back in rotation: median "
        f"{statistics.median(in_rotation):.2f} s (min {min(in_rotation):.2f}, max "
        f"{max(in_rotation):.2f}) over {len(in_rotation)} kills; goal < 2 s"
    )
    print(
        f"heal after kill -9, ReadyRole on the host: median {statistics.median(host_ready):.2f} s"
        " (includes the restart policy's first delay, 0.5 s ±20 %)"
    )


if __name__ == "__main__":
    main()
