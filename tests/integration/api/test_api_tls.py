"""The management API over TLS: ``cumulo serve --tls-cert/--tls-key`` serves https only, local
clients find the certificate to verify it with in ``api.json``, a client that does not trust it
is refused, and an API on a non-loopback address without TLS is refused at start with a
sentence (the bearer token must not cross a network in clear)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from ...certs import issue  # type: ignore[import-not-found]
from ...platform_harness import Platform, running  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _files(tmp_path: Path, name: str = "api") -> tuple[Path, Path]:
    c = issue("127.0.0.1", names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_text(c.pem)
    key.write_text(c.key_pem)
    return cert, key


def _cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    if home is not None:
        env["CUMULO_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "cumulo.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_api_serves_tls_and_local_clients_verify_it(tmp_path: Path) -> None:
    cert, key = _files(tmp_path)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    with running(lambda data: Platform(data, args=tls), "cumulo-tls-") as platform:
        url = platform.client.url
        assert url.startswith("https://127.0.0.1:")
        assert platform.client.health()["status"] == "ok"
        out = _cli("service", "create", "shop", home=platform.data)  # CA from api.json
        assert out.returncode == 0, out.stderr
        assert "shop" in _cli("service", "list", home=platform.data).stdout
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/v1/health", timeout=5)  # a client that does not trust it
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/v1/health", timeout=5)
        dashboard = _cli("dashboard", home=platform.data).stdout
        assert dashboard.startswith(f"{url}/dashboard/#token=")


def test_a_non_loopback_api_needs_tls_and_bad_tls_files_are_sentences(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = _cli("serve", "--data-dir", str(data), "--listen", "0.0.0.0:0", "--storage-ports", "off")
    assert out.returncode == 2, out.stderr
    assert "not a loopback address" in out.stderr and "--tls-cert" in out.stderr
    assert "Traceback" not in out.stderr

    cert, _ = _files(tmp_path, "one")
    _, other_key = _files(tmp_path, "two")
    out = _cli(
        "serve",
        *("--data-dir", str(data), "--listen", "127.0.0.1:0", "--storage-ports", "off"),
        *("--tls-cert", str(cert), "--tls-key", str(other_key)),
    )
    assert out.returncode == 2 and "cannot serve TLS" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    out = _cli("serve", "--data-dir", str(data), "--tls-cert", str(cert), "--storage-ports", "off")
    assert out.returncode == 2 and "go together" in out.stderr, out.stderr
