"""``GET /v1/metrics``: the platform's view of every instance in Prometheus' text format, for a
scraper given the API token (``Authorization: Bearer``). Built from the same deployment views as
``GET /v1/services/{service}`` (pure: views in, text out).

Per instance (labels ``service``, ``slot``, ``role``, ``instance``, ``deployment``):
``cumulo_instance_ready`` (1 when ReadyRole), ``cumulo_instance_in_rotation`` (1/0; absent for
roles without input endpoints), ``cumulo_instance_cpu_percent`` (of its VM size's cores),
``cumulo_instance_memory_bytes`` (resident) and ``cumulo_instance_restarts_total``; per
deployment, ``cumulo_deployment_instances`` by status. The load balancers' own counters
(connections, bytes, retries) are on each load balancer's ``/metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

FAMILIES = (
    ("cumulo_instance_ready", "gauge", "1 when the instance is ReadyRole."),
    ("cumulo_instance_in_rotation", "gauge", "1 when the load balancer may route to it."),
    ("cumulo_instance_cpu_percent", "gauge", "CPU use, percent of the VM size's cores."),
    ("cumulo_instance_memory_bytes", "gauge", "Resident memory of the instance's processes."),
    ("cumulo_instance_restarts_total", "counter", "Restarts by its host since it was placed."),
    ("cumulo_deployment_instances", "gauge", "Instances of a deployment by status."),
)


def _labels(**values: object) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in values.items()
    )
    return "{" + inner.replace("\n", "\\n") + "}"


def metrics_text(views: Iterable[Mapping[str, Any]]) -> str:
    """The exposition of ``views`` (deployment views of any services)."""
    samples: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    for view in views:
        statuses: Counter[str] = Counter()
        for inst in view.get("instances", []):
            statuses[inst["status"]] += 1
            labels = _labels(
                service=view["service"],
                slot=view["slot"],
                role=inst["role"],
                instance=inst["id"],
                deployment=view["id"],
            )
            samples["cumulo_instance_ready"].append(
                f"{labels} {int(inst['status'] == 'ReadyRole')}"
            )
            if inst.get("in_rotation") is not None:
                samples["cumulo_instance_in_rotation"].append(
                    f"{labels} {int(bool(inst['in_rotation']))}"
                )
            if inst.get("cpu_percent") is not None:
                samples["cumulo_instance_cpu_percent"].append(f"{labels} {inst['cpu_percent']}")
            if inst.get("memory_mb") is not None:
                memory = round(float(inst["memory_mb"]) * (1 << 20))
                samples["cumulo_instance_memory_bytes"].append(f"{labels} {memory}")
            samples["cumulo_instance_restarts_total"].append(f"{labels} {inst.get('restarts', 0)}")
        for status, count in sorted(statuses.items()):
            labels = _labels(
                service=view["service"], slot=view["slot"], deployment=view["id"], status=status
            )
            samples["cumulo_deployment_instances"].append(f"{labels} {count}")
    lines: list[str] = []
    for name, kind, help_text in FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"
