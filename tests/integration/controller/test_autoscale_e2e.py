"""End to end: autoscale on a real ``cumulo serve`` (controller, host agent, storage service).

- Queue: a worker role with a queue rule (windows and cooldowns of a few seconds). Messages put
  into the queue with the Azure SDK scale it out to the rule's count; clearing the queue scales
  it back in to the minimum. Each action is a ``ChangeDeploymentConfiguration`` operation with
  an ``autoscale.scaled`` event naming the rule and the value that fired.
- CPU: a worker that burns one core for a while gives a real CPU sample near 100 % of its
  VM size (Small: 1 core) and a scale-out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ...platform_harness import Platform, running, wait_until  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

CSDEF = """<?xml version="1.0" encoding="utf-8"?>
<ServiceDefinition name="{name}" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition">
  <WorkerRole name="Worker" vmsize="Small">
    <Runtime executionContext="elevated">
      <EntryPoint>
        <ProgramEntryPoint commandLine="python worker.py" setReadyOnProcessStart="true" />
      </EntryPoint>
    </Runtime>
  </WorkerRole>
</ServiceDefinition>
"""

CSCFG = """<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="{name}" xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration">
  <Role name="Worker"><Instances count="1" /></Role>
</ServiceConfiguration>
"""

IDLE = """
import time
while True:
    time.sleep(60)
"""

# Burns one core for 12 s after it starts, then idles (the machine is shared).
BURN = """
import time
end = time.monotonic() + 12
while time.monotonic() < end:
    pass
while True:
    time.sleep(60)
"""

DEV_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)


def write(root: Path, name: str, program: str) -> Path:
    (root / "Worker").mkdir(parents=True)
    (root / "ServiceDefinition.csdef").write_text(CSDEF.replace("{name}", name))
    (root / "ServiceConfiguration.cscfg").write_text(CSCFG.replace("{name}", name))
    (root / "Worker" / "worker.py").write_text(program)
    return root


def action(direction: str, kind: str, value: int) -> dict[str, Any]:
    return {"direction": direction, "type": kind, "value": value, "cooldown": "PT2S"}


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with running(lambda data: Platform(data, hosts=1), "cumulo-autoscale-") as p:
        yield p


def steady_at(platform: Platform, service: str, count: int) -> bool:
    """``count`` Worker instances, all Ready, and no operation in progress."""
    view = platform.client.get_deployment(service, "production")
    workers = [i for i in view["instances"] if i["role"] == "Worker"]
    ops = platform.client.list_operations(service)
    return (
        len(workers) == count
        and all(i["status"] == "ReadyRole" for i in workers)
        and all(o["status"] != "InProgress" for o in ops)
    )


def scaled_events(platform: Platform, service: str) -> list[dict[str, Any]]:
    return [e for e in platform.client.events(service) if e["name"] == "autoscale.scaled"]


def test_a_queue_rule_scales_out_and_back_in(platform: Platform, tmp_path: Path) -> None:
    from azure.storage.queue import QueueClient

    out = platform.run_cli("deploy", "jobs", str(write(tmp_path / "svc", "jobs", IDLE)))
    assert out.returncode == 0, out.stderr + platform.logs()
    port = json.loads((platform.data / "storage" / "ready.json").read_text())["queue"]
    queue = QueueClient.from_connection_string(DEV_CONNECTION.format(port=port), "work")
    queue.create_queue()
    rules = {
        "capacity": {"minimum": 1, "maximum": 4, "default": 1},
        "rules": [
            {
                "metric": "queue",
                "queue": "work",
                "timeWindow": "PT2S",
                "operator": "GreaterThan",
                "threshold": 5,
                "scaleAction": action("Increase", "ExactCount", 3),
            },
            {
                "metric": "queue",
                "queue": "work",
                "timeWindow": "PT2S",
                "operator": "<",
                "threshold": 1,
                "scaleAction": action("Decrease", "ExactCount", 1),
            },
        ],
    }
    (tmp_path / "bad.json").write_text('{"capacity": {"minimum": 2, "maximum": 1}, "rules": []}')
    bad = platform.run_cli(
        "autoscale", "set", "jobs", "--role", "Worker", "--file", str(tmp_path / "bad.json")
    )
    assert bad.returncode == 2 and "capacity.minimum (2) is above capacity.maximum (1)." in (
        bad.stderr
    )
    (tmp_path / "broken.json").write_text("{capacity")
    broken = platform.run_cli(
        "autoscale", "set", "jobs", "--role", "Worker", "--file", str(tmp_path / "broken.json")
    )
    assert broken.returncode == 2 and "broken.json is not JSON" in broken.stderr

    (tmp_path / "rules.json").write_text(json.dumps(rules))
    out = platform.run_cli(
        "autoscale", "set", "jobs", "--role", "Worker", "--file", str(tmp_path / "rules.json")
    )
    assert out.returncode == 0, out.stderr
    assert "production Worker: 1-4 instances (default 1), 2 rule(s)" in out.stdout
    assert "rules[0]: queue 'work' Average over PT2S > 5 -> Increase to 3" in out.stdout

    for n in range(12):
        queue.send_message(f"job {n}")
    wait_until(lambda: steady_at(platform, "jobs", 3), 30, "a scale-out to 3 Ready workers")
    (scaled,) = scaled_events(platform, "jobs")
    fields = scaled["fields"]
    assert (fields["from"], fields["to"], fields["rule"], fields["value"]) == (1, 3, 0, 12.0)
    assert fields["metric"] == "queue:devstoreaccount1/work"
    assert "fired with 12: scale out from 1 to 3" in fields["reason"]
    op = platform.client.get_operation(fields["operation"])
    assert (op["kind"], op["status"]) == ("ChangeDeploymentConfiguration", "Succeeded")

    queue.clear_messages()
    wait_until(lambda: steady_at(platform, "jobs", 1), 30, "a scale-in to the minimum")
    back = scaled_events(platform, "jobs")[-1]["fields"]
    assert (back["from"], back["to"], back["outcome"]) == (3, 1, "in")

    shown = platform.run_cli("autoscale", "show", "jobs")
    assert shown.returncode == 0, shown.stderr
    assert "last action: 3 -> 1" in shown.stdout and "rules[0] = 0" in shown.stdout
    assert platform.run_cli("autoscale", "off", "jobs", "--role", "Worker").returncode == 0
    gone = platform.run_cli("autoscale", "show", "jobs")
    assert "jobs has no autoscale settings." in gone.stdout
    names = [e["name"] for e in platform.client.events("jobs")]
    # (host events of the scale-in may still arrive after it)
    last_scaled = max(i for i, n in enumerate(names) if n == "autoscale.scaled")
    assert "autoscale.set" in names and "autoscale.off" in names[last_scaled:]


def test_a_cpu_rule_reads_a_busy_instance(platform: Platform, tmp_path: Path) -> None:
    out = platform.run_cli("deploy", "burn", str(write(tmp_path / "svc", "burn", BURN)))
    assert out.returncode == 0, out.stderr + platform.logs()
    platform.client.set_autoscale(
        "burn",
        "production",
        "Worker",
        {
            "capacity": {"minimum": 1, "maximum": 2},
            "rules": [
                {
                    "metric": "cpu",
                    "timeWindow": "PT2S",
                    "operator": ">",
                    "threshold": 30,
                    "scaleAction": action("Increase", "ChangeCount", 1),
                }
            ],
        },
    )
    wait_until(lambda: steady_at(platform, "burn", 2), 30, "a CPU scale-out to 2")
    (scaled,) = scaled_events(platform, "burn")
    # One core's worth of burning in a Small (1 core) instance; the machine is shared, so the
    # instance gets less than all of it.
    assert scaled["fields"]["metric"] == "cpu" and scaled["fields"]["value"] > 30, scaled
    platform.client.delete_autoscale("burn", "production", "Worker")
