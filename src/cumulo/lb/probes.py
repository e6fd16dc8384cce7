"""Custom load-balancer probes, run by the load balancer itself (as Azure's LB does).

Why here: the default probe is the guest agent's Ready status, which the controller already
turns into each backend's ``routable`` flag. A custom ``LoadBalancerProbe`` replaces it: the LB
connects to every backend of the endpoint each ``intervalSeconds`` (``tcp``: the connect must
succeed; ``http``: ``GET path`` must answer 200). A backend is up from its first successful
probe and goes down when no probe has succeeded for ``timeoutSeconds`` (Azure: interval 15 s,
timeout 31 s, i.e. two missed probes). ``ProbeState`` is the pure part; ``probe_once`` does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from cumulo.lb.routes import Probe


@dataclass(frozen=True)
class ProbeState:
    last_ok: float | None = None
    last_result: bool | None = None

    def record(self, ok: bool, now: float) -> ProbeState:
        return ProbeState(now if ok else self.last_ok, ok)

    def is_up(self, now: float, timeout: float) -> bool:
        return self.last_ok is not None and now - self.last_ok < timeout


async def probe_once(probe: Probe, address: str, port: int, timeout: float) -> bool:
    """One probe of one backend; True when it passes within ``timeout`` seconds."""
    target = probe.port or port
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, target)
            if probe.protocol == "tcp":
                return True
            request = (
                f"GET {probe.path or '/'} HTTP/1.1\r\nHost: {address}:{target}\r\n"
                "User-Agent: cumulo-lb-probe\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("latin-1"))
            status_line = await reader.readline()
            parts = status_line.split()
            return len(parts) >= 2 and parts[1] == b"200"
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
