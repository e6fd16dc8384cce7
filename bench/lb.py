"""Benchmark: cumulo's load balancer against HAProxy (mode tcp) and the backend alone.

Run: ``.venv/bin/python bench/lb.py [--rounds 5] [--duration 5] [--variants]``. Installs Debian's
``wrk`` and ``haproxy`` with apt-get when they are missing. Two tiny keep-alive HTTP backends
(``bench/lb_backend.py``, 100-byte bodies) sit behind HAProxy (``mode tcp``, one thread,
round robin, health checks) and behind ``cumulo lb serve`` (one process, uvloop, default
5-tuple distribution). Every round measures every configuration once, in a shuffled order, with
the same ``wrk -t1 -c64 --latency`` (after a 1 s warm-up), then a 100 MiB transfer with curl; the
ratios to HAProxy are taken within each round and the medians printed. ``--variants`` adds the
LB on the default asyncio loop, two independent LB processes sharing the port through
SO_REUSEPORT, and HAProxy with two threads.

The machine is shared and has 2 cores (wrk, proxy and backends compete for them): numbers are
noisy; look at the ratios, and at ``uptime`` printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
TOKEN = "bench-token"


def ensure_tools() -> None:
    missing = [t for t in ("wrk", "haproxy", "curl") if shutil.which(t) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, text=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_backend(procs: Procs) -> int:
    proc = procs.start([PY, str(HERE / "lb_backend.py"), "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def start_haproxy(
    procs: Procs, tmp: Path, backends: list[int], threads: int = 1
) -> tuple[int, list[int]]:
    port = free_port()
    servers = "\n".join(
        f"  server b{i} 127.0.0.1:{p} check inter 2s" for i, p in enumerate(backends)
    )
    cfg = tmp / f"haproxy-{threads}.cfg"
    cfg.write_text(
        f"global\n  nbthread {threads}\n  maxconn 4000\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
        f"listen vip\n  bind 127.0.0.1:{port}\n  balance roundrobin\n{servers}\n"
    )
    proc = procs.start(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL)
    wait_port(port)
    return port, [proc.pid]


def lb_table(backends: list[int], public_port: int = 0) -> dict[str, Any]:
    return {
        "version": 1,
        "slots": {
            "production": {
                "address": "127.0.0.1",
                "endpoints": {
                    "Http": {
                        "publicPort": public_port,
                        "protocol": "http",
                        "backends": [
                            {"instance": f"B_IN_{i}", "address": "127.0.0.1", "port": p}
                            for i, p in enumerate(backends)
                        ],
                    }
                },
            }
        },
    }


def start_cumulo(
    procs: Procs, tmp: Path, backends: list[int], extra: list[str], processes: int = 1
) -> tuple[int, list[int]]:
    """``cumulo lb serve`` with the two backends; with ``processes`` > 1, that many independent LB
    processes share the VIP port through SO_REUSEPORT (an experiment, see docs/networking.md)."""
    env = {**os.environ, "CUMULO_LOG_LEVEL": "warning"}
    port = free_port() if processes > 1 else 0
    routes = tmp / f"routes-{len(procs.procs)}.json"
    routes.write_text(json.dumps(lb_table(backends, port)))
    if processes > 1:
        extra = [*extra, "--reuse-port"]
    pids = []
    for _ in range(processes):
        proc = procs.start(
            [
                *(PY, "-m", "cumulo.cli.main", "lb", "serve", "--api", "127.0.0.1:0"),
                *("--token", TOKEN, "--routes", str(routes), *extra),
            ],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        api = json.loads(proc.stdout.readline())["api"]
        pids.append(proc.pid)
    import httpx

    listeners = httpx.get(
        api + "/v1/listeners", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ).json()["listeners"]
    port = next(x["port"] for x in listeners if x["endpoint"] == "Http")
    return port, pids


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def parse_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(port: int, duration: float, conns: int, fresh: bool = False) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/"
    close = ["-H", "Connection: close"] if fresh else []
    subprocess.run(["wrk", "-t1", f"-c{conns}", "-d1s", *close, url], capture_output=True)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", *close, url],
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk on port {port} printed no result:\n{out}")
    rps = float(found.group(1))
    p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "errors": 1.0 if (errors or non2xx) else 0.0,
    }


def transfer(port: int) -> float:
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download}",
            f"http://127.0.0.1:{port}/big",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return float(out) / (1 << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--variants", action="store_true", help="also the asyncio loop and workers")
    ap.add_argument("--no-transfer", action="store_true")
    ap.add_argument(
        "--fresh", action="store_true", help="also measure a new connection per request"
    )
    args = ap.parse_args()
    ensure_tools()
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-bench-lb-"))
    try:
        backends = [start_backend(procs), start_backend(procs)]
        configs: dict[str, tuple[int, list[int]]] = {"backend alone (1 of 2)": (backends[0], [])}
        configs["haproxy tcp"] = start_haproxy(procs, tmp, backends)
        configs["cumulo lb (uvloop)"] = start_cumulo(procs, tmp, backends, [])
        if args.variants:
            configs["haproxy tcp, nbthread 2"] = start_haproxy(procs, tmp, backends, threads=2)
            configs["cumulo lb, asyncio loop"] = start_cumulo(
                procs, tmp, backends, ["--loop", "asyncio"]
            )
            configs["cumulo lb x2 SO_REUSEPORT"] = start_cumulo(procs, tmp, backends, [], 2)
        print(f"before: {uptime()}")
        print(
            f"{args.rounds} rounds; wrk -t1 -c{args.connections} -d{args.duration:g}s --latency "
            "(keep-alive GET, 100-byte body); 100 MiB transfer with curl",
            flush=True,
        )
        results: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
        fresh: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
        for rnd in range(args.rounds):
            order = list(configs)
            random.shuffle(order)
            for name in order:
                port, pids = configs[name]
                cpu0 = cpu_seconds(pids)
                r = wrk(port, args.duration, args.connections)
                cpu = cpu_seconds(pids) - cpu0
                r["cpu_us"] = cpu / (r["rps"] * args.duration) * 1e6 if pids else float("nan")
                r["mbs"] = float("nan") if args.no_transfer else transfer(port)
                results[name].append(r)
                if args.fresh:
                    fresh[name].append(wrk(port, args.duration, 16, fresh=True))
            line = "  ".join(f"{results[n][-1]['rps']:.0f}" for n in configs)
            print(f"round {rnd + 1}: req/s {line}  ({', '.join(configs)})", flush=True)
        print(f"after:  {uptime()}\n")
        report(results)
        if args.fresh:
            print("\nnew connection per request (wrk -t1 -c16 -H 'Connection: close'):")
            report(fresh, goal=False)
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, list[dict[str, float]]], goal: bool = True) -> None:
    med = statistics.median
    ref = results["haproxy tcp"]
    head = (
        f"{'configuration':28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'MiB/s':>7} "
        f"{'CPU us/req':>10} {'req/s ÷':>8} {'p99 ÷':>6} {'MiB/s ÷':>8}"
    )
    print(head)
    print(
        f"{'':28} {'(median)':>8} {'':>7} {'':>7} {'':>7} {'':>10} "
        f"{'HAProxy':>8} {'HAProxy':>6} {'HAProxy':>8}"
    )
    for name, runs in results.items():

        def ratio(key: str, runs: list[dict[str, float]] = runs) -> float:
            return med(
                [
                    r[key] / h[key]
                    for r, h in zip(runs, ref, strict=True)
                    if key in h and h[key] == h[key] and h[key]
                ]
                or [float("nan")]
            )

        nan = float("nan")
        mbs = med(r.get("mbs", nan) for r in runs)
        cpu = med(r.get("cpu_us", nan) for r in runs)
        print(
            f"{name:28} {med(r['rps'] for r in runs):8.0f} {med(r['p50'] for r in runs):7.2f} "
            f"{med(r['p99'] for r in runs):7.2f} {mbs:7.0f} {cpu:10.1f} "
            f"{ratio('rps'):8.2f} {ratio('p99'):6.2f} {ratio('mbs'):8.2f}"
        )
        errs = sum(r["errors"] for r in runs)
        if errs:
            print(f"{'':28} ({errs:.0f} runs reported socket errors or non-2xx answers)")
    if not goal:
        return
    lb = results["cumulo lb (uvloop)"]
    rps_ratio = med([r["rps"] / h["rps"] for r, h in zip(lb, ref, strict=True)])
    p99_ratio = med([r["p99"] / h["p99"] for r, h in zip(lb, ref, strict=True)])
    print(
        f"\ngoal: req/s >= 0.8 x HAProxy -> {rps_ratio:.2f} "
        f"({'met' if rps_ratio >= 0.8 else 'NOT met'}); "
        f"p99 <= 1.5 x HAProxy -> {p99_ratio:.2f} ({'met' if p99_ratio <= 1.5 else 'NOT met'})"
    )
    print("ratios are medians of per-round ratios (each round measures every configuration)")


if __name__ == "__main__":
    main()
