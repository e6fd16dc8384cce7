"""`cumulo host …`: run a host agent, and look at one.

    cumulo host run --data DIR --listen 127.0.0.1:7070 --token-file TOKEN
    cumulo host status --data DIR

``run`` serves the host agent's API (``cumulo.host.api``) until SIGTERM/SIGINT; instances keep
running when it stops, and the next ``run`` on the same data directory adopts them. Once it
listens it writes ``DIR/agent.json`` (``{"url", "pid", "host_id"}``). A missing token file is
created with a random token (mode 0600).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from dataclasses import replace
from pathlib import Path

import click
import httpx

from cumulo.errors import InputError, TemporaryError
from cumulo.host.settings import HostSettings
from cumulo.log import configure


def _settings(
    heartbeat_interval: float | None,
    heartbeat_timeout: float | None,
    backoff_base: float | None,
    backoff_cap: float | None,
    probe_scale: float | None,
    no_cgroups: bool,
) -> HostSettings:
    settings = HostSettings()
    hb = settings.heartbeat
    if heartbeat_interval is not None:
        hb = replace(hb, interval_s=heartbeat_interval)
    if heartbeat_timeout is not None:
        hb = replace(hb, timeout_s=heartbeat_timeout)
    restart = settings.restart
    if backoff_base is not None:
        restart = replace(restart, base=backoff_base, cap=max(restart.cap, backoff_base))
    if backoff_cap is not None:
        restart = replace(restart, cap=backoff_cap)
    probes = settings.probes
    if probe_scale is not None:
        probes = replace(probes, scale=probe_scale)
    return replace(
        settings, heartbeat=hb, restart=restart, probes=probes, use_cgroups=not no_cgroups
    )


def _token(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    from cumulo.host.api import read_token

    return read_token(path)


@click.group("host")
def host() -> None:
    """Run and inspect a host agent (the process that runs role instances)."""


@host.command("run")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--listen", default="127.0.0.1:7070", show_default=True, help="HOST:PORT (port 0 = any)"
)
@click.option("--token-file", required=True, type=click.Path(path_type=Path))
@click.option("--host-id", default="host-0", show_default=True)
@click.option("--heartbeat-interval", type=float, help="seconds between SDK status checks")
@click.option("--heartbeat-timeout", type=float, help="seconds before a silent role is hung")
@click.option("--backoff-base", type=float, help="first restart delay, seconds")
@click.option("--backoff-cap", type=float, help="largest restart delay, seconds")
@click.option("--probe-scale", type=float, help="multiplies custom probe intervals/timeouts")
@click.option("--no-cgroups", is_flag=True, help="use rlimits even where cgroups are available")
@click.option("--drain", type=float, help="seconds out of rotation before Stopping (default 1)")
@click.option("--address-base", help="first instance address, e.g. 127.5.0.0 (default: by host id)")
def run(
    data_dir: Path,
    listen: str,
    token_file: Path,
    host_id: str,
    heartbeat_interval: float | None,
    heartbeat_timeout: float | None,
    backoff_base: float | None,
    backoff_cap: float | None,
    probe_scale: float | None,
    no_cgroups: bool,
    drain: float | None,
    address_base: str | None,
) -> None:
    """Run a host agent serving its API on --listen."""
    import uvicorn

    from cumulo.host.agent import HostAgent
    from cumulo.host.api import create_app

    configure()
    address, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InputError(f"--listen '{listen}' must be HOST:PORT, e.g. 127.0.0.1:7070.")
    token = _token(token_file)
    settings = _settings(
        heartbeat_interval, heartbeat_timeout, backoff_base, backoff_cap, probe_scale, no_cgroups
    )
    if drain is not None:
        settings = replace(settings, drain_s=drain)
    if address_base is not None:
        settings = replace(settings, address_base=address_base)
    agent = HostAgent(data_dir, settings, host_id=host_id)
    app = create_app(agent, token, manage_agent=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, int(port_text)))
    except OSError as exc:
        raise InputError(f"Cannot listen on {listen}: {exc.strerror}.") from None
    sock.listen(128)
    bound = sock.getsockname()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            info = {"url": f"http://{bound[0]}:{bound[1]}", "pid": os.getpid(), "host_id": host_id}
            tmp = data_dir / "agent.json.tmp"
            tmp.write_text(json.dumps(info))
            tmp.replace(data_dir / "agent.json")
            click.echo(f"host agent {host_id} listening on {info['url']}", err=True)
        await task

    asyncio.run(serve())


@host.command("status")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path))
@click.option("--token-file", type=click.Path(path_type=Path), help="default: DATA/token")
def status(data_dir: Path, token_file: Path | None) -> None:
    """Show the instances of the host agent running on DATA."""
    from cumulo.host.api import read_token

    try:
        info = json.loads((data_dir / "agent.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"No host agent has run on {data_dir} (no agent.json).") from None
    token = read_token(token_file or data_dir / "token")
    try:
        answer = httpx.get(
            f"{info['url']}/v1/instances",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise TemporaryError(f"The host agent at {info['url']} does not answer: {exc}.") from None
    if answer.status_code != 200:
        raise InputError(f"The host agent answered {answer.status_code}: {answer.text}")
    for item in answer.json()["instances"]:
        click.echo(
            f"{item['key']:40} {item['state']:18} {item['address']:12} pid={item['pid']} "
            f"restarts={item['restarts']} {item['detail']}"
        )


COMMANDS: list[click.Command] = [host]
