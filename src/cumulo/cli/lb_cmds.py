"""`cumulo lb …`: run the load balancer (data plane) and talk to its API.

``cumulo lb serve`` starts the process: the API on ``--api`` (token from ``--token``,
``--token-file`` or ``CUMULO_LB_TOKEN``), the last route table from ``--state-file`` if any, and
one line of JSON on stdout once it listens (``{"event": "lb.ready", "api": "http://…"}``) so a
parent process can find the real API port when it asked for port 0.

``cumulo lb routes|set-routes|swap|metrics`` call the API of a running load balancer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from cumulo.errors import AuthError, CumuloError, InputError


def _token(token: str | None, token_file: str | None) -> str:
    if token_file:
        try:
            return Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read the token file {token_file}: {exc.strerror}.") from None
    value = token or os.environ.get("CUMULO_LB_TOKEN", "")
    if not value:
        raise AuthError(
            "no load balancer token: pass --token, --token-file or set CUMULO_LB_TOKEN."
        )
    return value


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--api: expected HOST:PORT like 127.0.0.1:7070, got '{value}'.")
    return host, int(port)


@click.group("lb")
def lb_group() -> None:
    """The load balancer: one VIP per slot, probes, swap, drain, ACLs."""


@lb_group.command("serve")
@click.option(
    "--api", "api", default="127.0.0.1:7070", show_default=True, help="HOST:PORT of the LB API."
)
@click.option("--token", default=None, help="API token (or CUMULO_LB_TOKEN).")
@click.option("--token-file", default=None, help="File holding the API token.")
@click.option(
    "--state-file", default=None, type=click.Path(dir_okay=False), help="Keep the last routes here."
)
@click.option(
    "--routes",
    "routes_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Apply this route table (JSON) at start.",
)
@click.option(
    "--production-address", default="127.0.0.1", show_default=True, help="Production VIP."
)
@click.option("--staging-address", default="127.0.0.2", show_default=True, help="Staging VIP.")
@click.option(
    "--controller-url",
    default=None,
    help="At start, GET the route table from this URL (same token), retrying until it answers.",
)
@click.option("--reuse-port", is_flag=True, help="Bind listeners with SO_REUSEPORT (experiments).")
@click.option(
    "--loop",
    "loop_name",
    type=click.Choice(["uvloop", "asyncio"]),
    default="uvloop",
    show_default=True,
)
def serve(
    api: str,
    token: str | None,
    token_file: str | None,
    state_file: str | None,
    routes_file: str | None,
    production_address: str,
    staging_address: str,
    controller_url: str | None,
    reuse_port: bool,
    loop_name: str,
) -> None:
    """Run the load balancer in the foreground until SIGTERM or Ctrl-C."""
    from cumulo.lb import routes as lb_routes
    from cumulo.lb.api import LbApi
    from cumulo.lb.proxy import run_loop
    from cumulo.lb.server import LbSettings, LoadBalancer

    secret = _token(token, token_file)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # two descriptors per proxied connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = _hostport(api)
    addresses = {"production": production_address, "staging": staging_address}
    initial = None
    if routes_file:
        try:
            raw = json.loads(Path(routes_file).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{routes_file}: not valid JSON ({exc}).") from None
        initial = lb_routes.parse_table(raw, addresses)

    async def main() -> None:
        lb = LoadBalancer(
            addresses=addresses,
            state_file=Path(state_file) if state_file else None,
            settings=LbSettings(reuse_port=reuse_port),
        )
        await lb.start()
        if initial is not None and initial.version >= lb.table.version:
            await lb.apply(initial)
        pull = None
        if controller_url:
            pull = asyncio.get_running_loop().create_task(lb.pull_routes(controller_url, secret))
        server = LbApi(lb, secret)
        real_host, real_port = await server.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = {
            "event": "lb.ready",
            "api": f"http://{real_host}:{real_port}",
            "bootId": lb.boot_id,
            "pid": os.getpid(),
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        lb.log.info("lb.ready", api=ready["api"], loop=loop_name)
        await stop.wait()
        lb.log.info("lb.stopping")
        if pull is not None:
            pull.cancel()
        await server.close()
        await lb.close()

    run_loop(main, use_uvloop=loop_name == "uvloop")


def _call(
    api: str, token: str | None, token_file: str | None, method: str, path: str, body: Any = None
) -> Any:
    import httpx

    url = api if api.startswith("http") else f"http://{api}"
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {_token(token, token_file)}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise CumuloError(f"cannot reach the load balancer API at {url}: {exc}.") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        error = {401: AuthError, 400: InputError}.get(response.status_code, CumuloError)
        raise error(f"load balancer API: {detail}")
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


_api_options = [
    click.option(
        "--api", default="127.0.0.1:7070", show_default=True, help="The LB API (HOST:PORT or URL)."
    ),
    click.option("--token", default=None, help="API token (or CUMULO_LB_TOKEN)."),
    click.option("--token-file", default=None, help="File holding the API token."),
]


def _with_api(func: Any) -> Any:
    for option in reversed(_api_options):
        func = option(func)
    return func


@lb_group.command("routes")
@_with_api
def show_routes(api: str, token: str | None, token_file: str | None) -> None:
    """Print the current route table and the listeners' real addresses (JSON)."""
    click.echo(json.dumps(_call(api, token, token_file, "GET", "/v1/routes"), indent=2))


@lb_group.command("set-routes")
@click.argument("table_file", type=click.Path(exists=True, dir_okay=False))
@_with_api
def set_routes(table_file: str, api: str, token: str | None, token_file: str | None) -> None:
    """Send a route table (JSON file) to the load balancer."""
    try:
        body = json.loads(Path(table_file).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{table_file}: not valid JSON ({exc}).") from None
    click.echo(json.dumps(_call(api, token, token_file, "PUT", "/v1/routes", body), indent=2))


@lb_group.command("swap")
@_with_api
def swap(api: str, token: str | None, token_file: str | None) -> None:
    """Swap the production and staging VIPs' route tables."""
    result = _call(api, token, token_file, "POST", "/v1/swap", {})
    click.echo(f"swapped in {result['swapMs']:.3f} ms; route table version {result['version']}")


@lb_group.command("metrics")
@_with_api
def metrics(api: str, token: str | None, token_file: str | None) -> None:
    """Print the Prometheus metrics."""
    click.echo(_call(api, token, token_file, "GET", "/metrics"), nl=False)


COMMANDS: list[click.Command] = [lb_group]
