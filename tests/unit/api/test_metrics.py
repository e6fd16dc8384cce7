"""``metrics_text``: Prometheus exposition of deployment views, one sample per instance and
family, label values escaped, nothing for what a host did not report."""

from __future__ import annotations

from cumulo.api.metrics import metrics_text

VIEW = {
    "id": "d1",
    "service": 'sh"op',
    "slot": "production",
    "instances": [
        {
            "id": "Web_IN_0",
            "role": "Web",
            "status": "ReadyRole",
            "in_rotation": True,
            "cpu_percent": 12.5,
            "memory_mb": 2.0,
            "restarts": 3,
        },
        {
            "id": "Worker_IN_0",
            "role": "Worker",
            "status": "BusyRole",
            "in_rotation": None,
            "cpu_percent": None,
            "memory_mb": None,
            "restarts": 0,
        },
    ],
}


def test_one_sample_per_instance_and_family() -> None:
    text = metrics_text([VIEW])
    web = 'role="Web",instance="Web_IN_0",deployment="d1"}'
    assert f'cumulo_instance_ready{{service="sh\\"op",slot="production",{web} 1' in text
    assert f'cumulo_instance_cpu_percent{{service="sh\\"op",slot="production",{web} 12.5' in text
    assert f'memory_bytes{{service="sh\\"op",slot="production",{web} 2097152' in text
    assert f'restarts_total{{service="sh\\"op",slot="production",{web} 3' in text
    assert "Worker_IN_0" not in "".join(
        line for line in text.splitlines() if "cpu_percent{" in line or "in_rotation{" in line
    )
    assert 'cumulo_deployment_instances{service="sh\\"op",slot="production",' in text
    assert text.count("# TYPE ") == 6 and text.endswith("\n")
    assert metrics_text([]).count("# HELP") == 6
