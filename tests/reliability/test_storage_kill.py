"""The storage service is killed with kill -9 right after the guestbook acknowledged writes: the
platform starts it again on the same ports and data, and no acknowledged entry is lost; requests
to the web role (``/health``) through the VIP never fail meanwhile.

The guestbook's roles need their Azure SDKs, which the host agent installs from each role's
requirements.txt with pip (from the configured index): the first deployment takes a while, and
the test is skipped when pip cannot install them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cumulo.storage.azure.accounts import DEV_ACCOUNT, DEV_KEY

from .conftest import Load, Serve, wait_until

pytestmark = pytest.mark.slow

GUESTBOOK = Path(__file__).resolve().parents[2] / "examples" / "guestbook"


def _connection_string(storage: dict[str, int]) -> str:
    a = DEV_ACCOUNT
    return (
        f"DefaultEndpointsProtocol=http;AccountName={a};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{storage['blob']}/{a};"
        f"QueueEndpoint=http://127.0.0.1:{storage['queue']}/{a};"
        f"TableEndpoint=http://127.0.0.1:{storage['table']}/{a};"
    )


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (20, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def test_storage_killed_right_after_acknowledged_writes(serve: Serve, tmp_path: Path) -> None:
    storage = json.loads((serve.data / "storage" / "ready.json").read_text())
    cscfg = tmp_path / "ServiceConfiguration.Test.cscfg"
    cscfg.write_text(
        (GUESTBOOK / "ServiceConfiguration.Local.cscfg")
        .read_text()
        .replace("UseDevelopmentStorage=true", _connection_string(storage))
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cumulo.cli.main",
            "deploy",
            "guestbook",
            str(GUESTBOOK),
            "--config",
            str(cscfg),
            "--timeout",
            "150",
        ],
        env=serve.env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    if out.returncode != 0 and "pip" in (out.stderr + serve.logs()).lower():
        pytest.skip(f"the guestbook's role dependencies could not be installed: {out.stderr}")
    assert out.returncode == 0, out.stderr + serve.logs()
    url = serve.vip("guestbook", "production")
    signed = [f"visitor {n}" for n in range(8)]
    with Load(url + "health") as load, httpx.Client(timeout=30) as http:
        for n, name in enumerate(signed):
            files = {"picture": ("p.jpg", _jpeg(), "image/jpeg")} if n % 4 == 0 else None
            answer = http.post(f"{url}sign", data={"name": name, "message": "kept"}, files=files)
            assert answer.status_code == 303, answer.text[:300]
        # Every write above is acknowledged: kill -9 the storage service at once.
        pid = json.loads((serve.data / "storage" / "process.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def restarted() -> bool:
            info = json.loads((serve.data / "storage" / "process.json").read_text())
            return bool(info["pid"] != pid)

        wait_until(restarted, 30, "the platform to start the storage service again")

        def page() -> str | None:
            answer = httpx.get(url, timeout=10)
            return answer.text if answer.status_code == 200 else None

        text = wait_until(page, 30, "the guestbook page again")
        back = time.monotonic() - killed_at
        missing = [name for name in signed if name not in text]
        assert not missing, f"acknowledged entries lost: {missing}"
        wait_until(lambda: (page() or "").count('src="/thumbnails/') >= 2, 60, "both thumbnails")
    print(
        f"[storage kill -9] {len(signed)} acknowledged entries, 0 lost; storage back and the "
        f"page whole {back:.1f} s after the kill"
    )
    load.assert_clean("storage kill -9 (/health through the VIP)")
