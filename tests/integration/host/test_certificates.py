"""Certificates reach an instance as files: the certificate for everyone, the private key for
the instance's user only (or for elevated processes only, with ``permissionLevel="elevated"``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cumulo.state.spec import CertificateSpec, ProgramEntryPointSpec

from ...certs import issue  # type: ignore[import-not-found]
from .conftest import run, running_agent, spec, state_is, wait_for, write_role

WORKER = {
    "w.py": """
        import os, pathlib, time
        lines = []
        for name in ("SSL", "ADMIN"):
            crt = os.environ.get(f"CUMULO_CERTIFICATE_{name}")
            key = os.environ.get(f"CUMULO_CERTIFICATE_{name}_KEY")
            try:
                key_ok = bool(key) and "PRIVATE KEY" in pathlib.Path(key).read_text()
            except PermissionError:
                key_ok = False
            crt_ok = bool(crt) and "BEGIN CERTIFICATE" in pathlib.Path(crt).read_text()
            lines.append(f"{name} {crt_ok} {key_ok}")
        print("\\n".join(lines), flush=True)
        while True:
            time.sleep(1)
    """
}


def self_signed(common_name: str) -> tuple[str, str]:
    c = issue(common_name)
    return c.thumbprint, c.pem + c.key_pem  # Azure names certificates by SHA-1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a limited user")
def test_certificates_are_files_with_private_keys_for_the_right_user(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    ssl_thumb, ssl_pem = self_signed("ssl")
    admin_thumb, admin_pem = self_signed("admin")
    s = spec(
        write_role(tmp_path / "w", WORKER),
        entry_point=ProgramEntryPointSpec("python w.py"),
        certificates=(
            CertificateSpec("SSL", ssl_thumb, ssl_pem),
            CertificateSpec("Admin", admin_thumb, admin_pem, permission_level="elevated"),
        ),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            root = next(data_dir.glob("instances/*"))
            log = root / "logs" / "entry.log"
            await wait_for(lambda: log.exists() and "ADMIN" in log.read_text())
            # the limited role reads both certificates, and only its own private key
            assert log.read_text().split("\n")[:2] == ["SSL True True", "ADMIN True False"]
            certs = root / "certificates"
            key = certs / f"{ssl_thumb}.key"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            assert key.stat().st_uid != 0
            assert (certs / f"{admin_thumb}.key").stat().st_uid == 0
            assert "PRIVATE KEY" not in (certs / f"{ssl_thumb}.crt").read_text()
            assert stat.S_IMODE((root / "spec.json").stat().st_mode) == 0o600

    run(body())
