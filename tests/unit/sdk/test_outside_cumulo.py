"""Outside cumulo the SDK says so: is_available is False, everything else raises a sentence."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os
os.environ.pop("CUMULO_AGENT_SOCKET", None)
from cumulo.sdk import RoleEnvironment, RoleEnvironmentError
assert RoleEnvironment.is_available is False
try:
    RoleEnvironment.deployment_id
except RoleEnvironmentError as exc:
    print(exc)
os.environ["CUMULO_AGENT_SOCKET"] = "/nonexistent/agent.sock"
assert RoleEnvironment.is_available is False
try:
    RoleEnvironment.get_configuration_setting_value("X")
except RoleEnvironmentError as exc:
    print(exc)
"""


def test_not_available_outside_cumulo() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert out[0] == (
        "The role environment is not available: CUMULO_AGENT_SOCKET is not set "
        "(this process does not run inside a cumulo role instance)."
    )
    assert out[1].startswith("The role environment is not available: cannot reach the agent at")


def test_sdk_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import cumulo.sdk, cumulo.sdk.run; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'structlog','click','httpx','starlette','uvicorn'} or m in "
        "{'cumulo.errors','cumulo.log','cumulo.clock'}); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
