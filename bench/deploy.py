"""Benchmark: ``cumulo deploy`` of 2 roles x 3 instances until every instance is ReadyRole.
Goal: < 3 s.

Run: ``.venv/bin/python bench/deploy.py [--rounds 5]``. The embedded platform (one host agent, a
load balancer, no storage service) runs in this process; each round runs the real CLI
(``cumulo deploy SERVICE DIR``, which packages the directory, uploads it, creates the deployment
and waits until every instance is Ready), then deletes the deployment. The service: a web role
(a WSGI site, 3 instances) and a worker role (a program, 3 instances). Printed: the CLI's wall
time (including its own start, ~0.3 s of imports) and, separately, the time from the API's
create call to the last ReadyRole. The machine is shared: numbers are noisy (``uptime`` is
printed).
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
from cumulo.package.build import build_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-deploy-"))
    src = bp.tiny_service(work / "svc", "bench", web=3, worker=3)
    cli_times: list[float] = []
    api_times: list[float] = []
    with bp.platform() as p:
        for n in range(args.rounds):
            cli_times.append(p.cli("deploy", "bench", str(src), "--timeout", "120"))
            p.cli("delete", "bench", "--slot", "production")
            # The same through the API alone: create the deployment, poll until all Ready.
            build_package(src, work / "svc.cspkg", config=src / "ServiceConfiguration.cscfg")
            digest = p.client.upload_package((work / "svc.cspkg").read_bytes())["digest"]
            cfg = (src / "ServiceConfiguration.cscfg").read_text()
            started = time.perf_counter()
            p.client.create_deployment("bench", "production", package=digest, configuration=cfg)
            p.wait_ready("bench", "production", 6)
            api_times.append(time.perf_counter() - started)
            p.cli("delete", "bench", "--slot", "production")
            print(f"round {n + 1}: cli {cli_times[-1]:.2f} s, api {api_times[-1]:.2f} s")
    shutil.rmtree(work, ignore_errors=True)
    print(f"uptime: {bp.uptime()}")
    print(
        f"deploy 2 roles x 3 instances, cumulo deploy until all ReadyRole: median "
        f"{statistics.median(cli_times):.2f} s (min {min(cli_times):.2f}, max "
        f"{max(cli_times):.2f}) over {len(cli_times)} rounds; goal < 3 s"
    )
    print(
        f"deploy 2 roles x 3 instances, API create -> all ReadyRole: median "
        f"{statistics.median(api_times):.2f} s (min {min(api_times):.2f}, max "
        f"{max(api_times):.2f})"
    )


if __name__ == "__main__":
    main()
