"""`cumulo` commands for services and deployments, through the management API (``cumulo.client``).

    cumulo service create|list|show|delete NAME
    cumulo deploy SERVICE DIR|PKG [--config F] --slot staging|production [--suspended]
    cumulo status SERVICE [--slot S]
    cumulo swap SERVICE
    cumulo scale SERVICE ROLE COUNT --slot S
    cumulo config SERVICE F --slot S [--mode auto|manual|simultaneous]
    cumulo upgrade SERVICE DIR|PKG [--config F] --slot S [--mode M] [--role R] [--force]
    cumulo walk SERVICE --slot S --domain N
    cumulo rollback SERVICE --slot S [--mode auto|manual]
    cumulo instance reboot|reimage|rebuild|delete SERVICE INSTANCE --slot S
    cumulo suspend|start SERVICE --slot S
    cumulo delete SERVICE [--slot S]
    cumulo events SERVICE [--slot S] [--follow]
    cumulo operation show|wait ID

The platform is found through ``CUMULO_URL`` + ``CUMULO_TOKEN`` or the data directory
(``$CUMULO_HOME``; see ``cumulo.client``). Every mutating command waits for its operation and
shows progress on stderr unless ``--no-wait``; every command takes ``--json``. Exit codes are the
error's (``cumulo.errors``): 2 bad input, 3 not found, 4 conflict, 5 auth, 6 unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cumulo import errors
from cumulo.client import Client
from cumulo.errors import InputError, NotFoundError
from cumulo.model.service import find_configuration
from cumulo.package.build import build_package

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
SLOT = click.Choice(["production", "staging"], case_sensitive=False)
MODE = click.Choice(["auto", "manual", "simultaneous"], case_sensitive=False)


def _client() -> Client:
    return Client.from_environment()


def _emit(data: Any, as_json: bool, text: Callable[[], None] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif text is not None:
        text()


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def wait_options(f: F) -> F:
    f = click.option(
        "--no-wait", is_flag=True, help="Return once the operation is accepted; do not wait."
    )(f)
    f = click.option(
        "--timeout",
        type=float,
        default=3600.0,
        show_default=True,
        help="Seconds to wait for the operation.",
    )(f)
    return json_option(f)


def _instances_line(view: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for inst in view.get("instances", []):
        counts[inst["status"]] = counts.get(inst["status"], 0) + 1
    upgrade = view.get("upgrade")
    walk = f", UD {upgrade['current_domain']} {upgrade['current_domain_state']}" if upgrade else ""
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{view['slot']}: {view['status']}{walk} ({parts or 'no instances'})"


def _finish(
    client: Client,
    op: dict[str, Any],
    *,
    no_wait: bool,
    timeout: float,
    as_json: bool,
    watch: tuple[str, str] | None = None,
    done: str = "",
) -> None:
    """Wait for an operation (progress on stderr), then print the result."""
    if no_wait:
        _emit(op, as_json, lambda: click.echo(f"operation {op['id']} accepted ({op['kind']})"))
        return
    last: list[str] = []

    def progress(current: dict[str, Any]) -> None:
        line = f"{current['kind']}: {current['status']}"
        if watch is not None and current["status"] == "InProgress":
            with contextlib.suppress(NotFoundError):
                line += " — " + _instances_line(client.get_deployment(*watch))
        if not last or last[-1] != line:
            last.append(line)
            if not as_json:
                click.echo(line, err=True)

    final = client.wait(op["id"], timeout=timeout, progress=progress)
    if watch is not None:
        _settle(client, *watch)
    _emit(final, as_json, lambda: click.echo(done or f"{final['kind']} succeeded."))


def _settle(client: Client, service: str, slot: str, limit: float = 10.0) -> None:
    """After an operation: wait (at most ``limit`` s) until the load balancer routes to every
    Ready instance and each http VIP answers, so the addresses the user tries next work."""
    import time

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            view = client.get_deployment(service, slot)
        except NotFoundError:
            return
        ready = [i for i in view["instances"] if i["status"] == "ReadyRole"]
        if all(i.get("in_rotation") is not False for i in ready) and _vips_answer(view):
            return
        time.sleep(0.1)


def _package_bytes(path: Path, config: Path | None) -> tuple[bytes, str]:
    """The package bytes and the configuration text for DIR|PKG and --config."""
    if path.is_dir():
        cfg = config or find_configuration(path)
        if cfg is None:
            raise InputError(f"{path} holds no ServiceConfiguration*.cscfg; pass --config FILE.")
        with tempfile.TemporaryDirectory(prefix="cumulo-pkg-") as tmp:
            out = Path(tmp) / "service.cspkg"
            build_package(path, out, config=cfg)
            data = out.read_bytes()
    elif path.is_file():
        if config is None:
            raise InputError(f"{path} is a package; pass its configuration with --config FILE.")
        cfg = config
        data = path.read_bytes()
    else:
        raise InputError(f"{path} does not exist; give a service directory or a .cspkg file.")
    try:
        text = cfg.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{cfg} cannot be read: {exc.strerror or exc}.") from None
    return data, text


def _read_config(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}.") from None


# -- the platform --------------------------------------------------------------------------------


def _storage_ports(text: str) -> tuple[int, int, int] | None:
    if text.strip().lower() == "off":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not all(p.isdigit() and int(p) < 65536 for p in parts):
        raise InputError(
            f"--storage-ports {text!r}: give BLOB,QUEUE,TABLE ports (0 = any), or 'off'."
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


@click.command("serve")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Where the platform keeps its state (default: $CUMULO_HOME or the user data dir).",
)
@click.option(
    "--hosts", type=click.IntRange(1, 20), default=1, show_default=True, help="Simulated hosts."
)
@click.option(
    "--listen", default="127.0.0.1:8283", show_default=True, help="HOST:PORT of the API (0 = any)."
)
@click.option(
    "--storage-ports",
    default="10000,10001,10002",
    show_default=True,
    help="Blob, queue and table ports of the storage service (0 = any), or 'off'.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    help="Serve the API over TLS with this PEM certificate (chain); needs --tls-key.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False), help="The PEM key of --tls-cert.")
@click.option(
    "--allow-plain-http",
    is_flag=True,
    help="Allow a non-loopback --listen without TLS (only behind a proxy that ends TLS).",
)
def serve(
    data_dir: Path | None,
    hosts: int,
    listen: str,
    storage_ports: str,
    tls_cert: str | None,
    tls_key: str | None,
    allow_plain_http: bool,
) -> None:
    """Run the platform in the foreground: controller + API, host agents, load balancers.

    The API listens on loopback unless --listen says otherwise; any other address needs TLS
    (--tls-cert and --tls-key) or --allow-plain-http. Ctrl-C stops every instance and every
    process it started.
    """
    if (tls_cert is None) != (tls_key is None):
        raise errors.InputError("--tls-cert and --tls-key go together: give both or neither.")
    import asyncio
    import signal

    from cumulo.api.platform import Platform
    from cumulo.client import default_home
    from cumulo.log import configure

    configure()
    directory = data_dir or default_home()

    async def main() -> None:
        platform = Platform(
            directory,
            hosts=hosts,
            listen=listen,
            storage_ports=_storage_ports(storage_ports),
            tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
            allow_plain_http=allow_plain_http,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            url = await platform.start()
            click.echo(
                f"cumulo is serving on {url} with {hosts} host(s); data in {directory}. "
                f"Dashboard: {url}/dashboard/ ('cumulo dashboard' prints a sign-in link). "
                "Ctrl-C stops everything.",
                err=True,
            )
            await stop.wait()
            click.echo("stopping…", err=True)
        finally:
            await platform.stop()

    asyncio.run(main())


@click.command("run")
@click.argument("source", type=click.Path(path_type=Path), metavar="DIR|PKG")
@click.option("--config", "config", type=click.Path(path_type=Path), help=".cscfg to run with.")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--hosts", type=click.IntRange(1, 20), default=1, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Keep the platform's state here (default: a temporary directory, removed at exit).",
)
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="HOST:PORT of the API.")
@click.option(
    "--storage-ports",
    default="10000,10001,10002",
    show_default=True,
    help="Blob, queue and table ports of the storage service (0 = any), or 'off'.",
)
def run(
    source: Path,
    config: Path | None,
    slot: str,
    hosts: int,
    data_dir: Path | None,
    listen: str,
    storage_ports: str,
) -> None:
    """The emulator: start the platform, deploy DIR|PKG, print its URLs and follow its logs.

    Ctrl-C tears everything down. With --data-dir the state stays there, and the next run on the
    same directory updates the deployment it finds in the slot.
    """
    import asyncio
    import os
    import shutil
    import signal

    from cumulo.api.platform import Platform
    from cumulo.log import configure
    from cumulo.model.parse import parse_definition
    from cumulo.package.read import open_package

    os.environ.setdefault("CUMULO_LOG_LEVEL", "warning")  # the components' logs, too
    configure()
    data, configuration = _package_bytes(source, config)
    definition = parse_definition(open_package(data).read("ServiceDefinition.csdef"))
    name = definition.name
    temporary = data_dir is None
    directory = data_dir or Path(tempfile.mkdtemp(dir="/tmp", prefix="cumulo-run-"))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o711)
    home = (directory / "data" if temporary else directory).resolve()
    other = "staging" if slot == "production" else "production"
    ports = {e.name: e.port for r in definition.roles for e in r.input_endpoints}

    def deploy(c: Client, text: str) -> dict[str, Any]:
        with contextlib.suppress(errors.ConflictError):
            c.create_service(name)
        package = c.upload_package(data)["digest"]
        try:
            op = c.create_deployment(name, slot, package=package, configuration=text)
        except errors.ConflictError:
            # The slot already holds a deployment (a previous run on this data directory): bring
            # it to this package and configuration, all update domains at once.
            current = c.get_deployment(name, slot)
            if current.get("operation"):
                # An operation left in progress by the previous run (an upgrade the platform was
                # stopped in): it resumes now; let it finish first.
                click.echo(f"waiting for operation {current['operation']} first…", err=True)
                with contextlib.suppress(errors.CumuloError):  # failed: deploy over it anyway
                    c.wait(str(current["operation"]), timeout=600)
                current = c.get_deployment(name, slot)
            if current["package"] == package and current["configuration"] == text:
                op = None
            else:
                op = c.upgrade(name, slot, package=package, configuration=text, mode="simultaneous")
        if op is not None:
            _finish(c, op, no_wait=False, timeout=600, as_json=False, watch=(name, slot))
        return _wait_ready(c, name, slot, set(ports), timeout=600)

    async def main() -> None:
        platform = Platform(
            home,
            hosts=hosts,
            listen=listen,
            emulated=True,
            storage_ports=_storage_ports(storage_ports),
            storage_fallback=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        try:
            url = await platform.start()
            token = (home / "api-token").read_text().strip()
            text = _with_storage(configuration, platform.storage)
            with Client(url, token) as c:
                # Ctrl-C while the deployment starts stops at once: the wait runs in a daemon
                # thread that is left behind (asyncio.to_thread would hold the exit until it ends).
                deploying = _in_thread(deploy, c, text)
                stopping = asyncio.ensure_future(stop.wait())
                either: set[asyncio.Future[Any]] = {deploying, stopping}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not deploying.done():
                    deploying.cancel()  # whatever the thread ends with is dropped
                    return
                view = deploying.result()
                other_vips = await _in_thread(_vips_or_none, c, name, other)
                if other_vips:  # a deployment from an earlier run (or a swap) is there
                    for endpoint, address in sorted(other_vips.items()):
                        click.echo(f"{other} ({endpoint}): http://{address}/")
                else:
                    other_ip = platform.slot_addresses(name)[other]
                    for endpoint in sorted(ports):
                        click.echo(
                            f"{other} ({endpoint}, empty until you deploy there): "
                            f"http://{other_ip}:{ports[endpoint]}/ (or the next free port)"
                        )
                click.echo(f"{slot}:")
                for endpoint, address in sorted(view["vips"].items()):
                    click.echo(f"{endpoint}: http://{address}/")
                click.echo(f"dashboard: {dashboard_link(url, token)}")
                click.echo(f"API {url} (CUMULO_HOME={home}); Ctrl-C stops.")
                click.echo(
                    f"data directory: {home}{' (removed at exit)' if temporary else ''}; "
                    f"in another shell: export CUMULO_HOME={home}; cumulo status {name}"
                )
                follower = LogFollower(c, name, slot, None, None)
                while not stop.is_set():
                    try:
                        lines = await _in_thread(follower.poll, 500)
                    except errors.CumuloError:
                        lines = []  # the slot is being swapped, scaled or deleted: try again
                    _print_log_lines(lines, False)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            # Stop first: a closed terminal or pipe (`cumulo run | tee`, Ctrl-C kills tee too)
            # must not leave the platform running because a message could not be written.
            with contextlib.suppress(OSError):
                click.echo("stopping…", err=True)
            await platform.stop()
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        # stdout went away (a pipe's reader died); the platform was stopped in main's finally.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit


def _vips_or_none(c: Client, name: str, slot: str) -> dict[str, str] | None:
    """The slot's VIPs (endpoint -> address), or None when the slot is empty."""
    try:
        vips: dict[str, str] = c.get_deployment(name, slot)["vips"]
    except NotFoundError:
        return None
    return vips


def _wait_ready(
    c: Client, name: str, slot: str, endpoints: set[str], *, timeout: float
) -> dict[str, Any]:
    """The slot's deployment once it runs with every instance Ready, in the load balancer's
    rotation (the route table after Ready is set a moment later) and its VIPs known (learnt when
    the routes are next set, a moment later after an adoption), progress on stderr."""
    import time

    deadline = time.monotonic() + timeout
    ready_since: float | None = None
    last = ""
    while True:
        view = c.get_deployment(name, slot)
        statuses = {i["status"] for i in view["instances"]}
        ready = view["status"] == "Running" and statuses <= {"ReadyRole"}
        ready = ready and view.get("operation") is None
        ready = ready and all(i.get("in_rotation") is not False for i in view["instances"])
        if ready:
            ready_since = ready_since or time.monotonic()
            late = time.monotonic() - ready_since > 10
            if (endpoints <= set(view["vips"]) and _vips_answer(view)) or late:
                return view
        else:
            ready_since = None
        line = _instances_line(view)
        if line != last:
            click.echo(line, err=True)
            last = line
        if time.monotonic() > deadline:
            raise errors.TemporaryError(
                f"The {slot} deployment of {name} was not Ready within {timeout:.0f} s ({line})."
            )
        time.sleep(0.25)


def _vips_answer(view: dict[str, Any]) -> bool:
    """Whether every http VIP of the deployment answers a request (any status): with a custom
    probe, the load balancer routes to an instance only once its probe passed."""
    import httpx

    http = {
        e["name"]
        for r in view.get("roles", [])
        for e in r["input_endpoints"]
        if e["protocol"] == "http"
    }
    for endpoint, address in view["vips"].items():
        if endpoint in http:
            try:
                httpx.get(f"http://{address}/", timeout=2.0)
            except httpx.HTTPError:
                return False
    return True


def _in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run ``fn(*args)`` in a daemon thread; the future gets its result (never blocks exit)."""
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, daemon=True).start()
    return future


def _with_storage(configuration: str, storage: dict[str, Any] | None) -> str:
    """The configuration with ``UseDevelopmentStorage=true`` replaced by an explicit connection
    string when the platform's storage service is not on the development ports 10000-10002."""
    if storage is None or (storage["blob"], storage["queue"], storage["table"]) == (
        10000,
        10001,
        10002,
    ):
        return configuration
    from xml.sax.saxutils import escape

    from cumulo.storage.azure.accounts import DEV_ACCOUNT, DEV_KEY

    host = storage.get("host", "127.0.0.1")
    explicit = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{storage['blob']}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{storage['queue']}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{storage['table']}/{DEV_ACCOUNT};"
    )
    return configuration.replace("UseDevelopmentStorage=true", escape(explicit))


# -- services ------------------------------------------------------------------------------------


@click.group("service")
def service() -> None:
    """Create, list, show and delete cloud services."""


@service.command("create")
@click.argument("name")
@click.option("--label", default="", help="A label (default: the name).")
@click.option("--description", default="", help="Up to 1024 characters.")
@json_option
def service_create(name: str, label: str, description: str, as_json: bool) -> None:
    """Create the cloud service NAME."""
    with _client() as c:
        record = c.create_service(name, label=label, description=description)
    _emit(record, as_json, lambda: click.echo(f"service {name} created"))


@service.command("list")
@json_option
def service_list(as_json: bool) -> None:
    """List the cloud services."""
    with _client() as c:
        services = c.list_services()

    def text() -> None:
        for s in services:
            click.echo(s["name"])

    _emit(services, as_json, text)


@service.command("show")
@click.argument("name")
@json_option
def service_show(name: str, as_json: bool) -> None:
    """Show a service and its deployments."""
    with _client() as c:
        data = c.get_service(name)
    _emit(data, as_json, lambda: _print_status(data))


@service.command("delete")
@click.argument("name")
@json_option
def service_delete(name: str, as_json: bool) -> None:
    """Delete a service (refused while it has deployments)."""
    with _client() as c:
        c.delete_service(name)
    _emit({"deleted": name}, as_json, lambda: click.echo(f"service {name} deleted"))


# -- certificates --------------------------------------------------------------------------------


@click.group("cert")
def cert() -> None:
    """A service's certificate store: the certificates a .cscfg names by thumbprint."""


@cert.command("add")
@click.argument("service_name", metavar="SERVICE")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--password", help="Password of a PFX or of an encrypted PEM key.")
@json_option
def cert_add(service_name: str, file: Path, password: str | None, as_json: bool) -> None:
    """Add a PEM or PFX certificate (with its private key, if the file has one)."""
    with _client() as c:
        added = c.add_certificate(
            service_name, file.read_bytes(), password=password, filename=file.name
        )
    _emit(added, as_json, lambda: click.echo(f"{added['thumbprint']}  {added['subject']}"))


@cert.command("list")
@click.argument("service_name", metavar="SERVICE")
@json_option
def cert_list(service_name: str, as_json: bool) -> None:
    """List the service's certificates."""
    with _client() as c:
        certs = c.list_certificates(service_name)

    def text() -> None:
        for x in certs:
            key = "key" if x["has_private_key"] else "no key"
            click.echo(f"{x['thumbprint']}  {x['subject']}  until {x['not_after']}  ({key})")

    _emit(certs, as_json, text)


@cert.command("delete")
@click.argument("service_name", metavar="SERVICE")
@click.argument("thumbprint")
@json_option
def cert_delete(service_name: str, thumbprint: str, as_json: bool) -> None:
    """Remove a certificate from the service's store."""
    with _client() as c:
        c.delete_certificate(service_name, thumbprint)
    _emit({"deleted": thumbprint.upper()}, as_json, lambda: click.echo("deleted"))


# -- deployments ---------------------------------------------------------------------------------


@click.command("deploy")
@click.argument("service_name", metavar="SERVICE")
@click.argument("source", type=click.Path(path_type=Path), metavar="DIR|PKG")
@click.option("--config", "config", type=click.Path(path_type=Path), help=".cscfg to deploy.")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--suspended", is_flag=True, help="Create it Suspended (start it later).")
@click.option("--name", default="", help="Deployment name (default: its id).")
@click.option("--label", default="")
@wait_options
def deploy(
    service_name: str,
    source: Path,
    config: Path | None,
    slot: str,
    suspended: bool,
    name: str,
    label: str,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Deploy a service directory or package into a slot (creating the service if needed)."""
    data, configuration = _package_bytes(source, config)
    with _client() as c:
        try:
            c.get_service(service_name)
        except NotFoundError:
            c.create_service(service_name)
        package = c.upload_package(data)["digest"]
        op = c.create_deployment(
            service_name,
            slot,
            package=package,
            configuration=configuration,
            name=name,
            label=label,
            start=not suspended,
        )
        _finish(
            c,
            op,
            no_wait=no_wait,
            timeout=timeout,
            as_json=as_json,
            watch=(service_name, slot),
            done=f"deployed {service_name} to {slot}",
        )


def _print_status(data: dict[str, Any]) -> None:
    click.echo(f"service {data['name']}")
    deployments = data.get("deployments", [])
    if not deployments:
        click.echo("  no deployments")
    for d in deployments:
        click.echo(f"  {d['slot']}: {d['status']}  id {d['id']}  revision {d['revision']}")
        if d.get("operation"):
            click.echo(f"    operation {d['operation']} in progress (other changes wait for it)")
        for ep, address in sorted(d.get("vips", {}).items()):
            click.echo(f"    vip {ep}: {address}")
        if d.get("upgrade"):
            u = d["upgrade"]
            click.echo(
                f"    {u['type'].lower()} in progress ({u['mode']}): update domain "
                f"{u['current_domain']} {u['current_domain_state']} of {u['domain_count']}"
            )
        for i in d.get("instances", []):
            fd = "-" if i["fault_domain"] is None else i["fault_domain"]
            cpu = "-" if i.get("cpu_percent") is None else f"{i['cpu_percent']:.0f}%"
            memory = "-" if i.get("memory_mb") is None else f"{i['memory_mb']:.0f} MB"
            lb = {True: "in LB", False: "out of LB"}.get(i.get("in_rotation"), "")
            click.echo(
                f"    {i['id']:<24} {i['status']:<18} UD {i['update_domain']}  FD {fd}"
                f"  {i.get('host') or '':<6} cpu {cpu:>4}  mem {memory:>7}"
                f"  restarts {i.get('restarts', 0)}  {lb}".rstrip()
            )
            if i.get("detail") and i["status"] != "ReadyRole":
                click.echo(f"      {i['detail']}")


def dashboard_link(url: str, token: str) -> str:
    """The dashboard's address, signed in: the token rides in the URL fragment, which a browser
    never sends to a server (the page moves it to its session storage and drops it)."""
    return f"{url.rstrip('/')}/dashboard/#token={token}"


@click.command("dashboard")
def dashboard() -> None:
    """Print a link that opens the dashboard signed in (it holds the API token: keep it private)."""
    with _client() as c:
        c.health()
        click.echo(dashboard_link(c.url, c.token))


@click.command("status")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT, help="Only this slot.")
@json_option
def status(service_name: str, slot: str | None, as_json: bool) -> None:
    """Show a service's deployments: status, VIPs, upgrade state and instances."""
    with _client() as c:
        data = c.get_service(service_name)
    if slot is not None:
        data["deployments"] = [d for d in data["deployments"] if d["slot"] == slot.lower()]
    _emit(data, as_json, lambda: _print_status(data))


@click.command("swap")
@click.argument("service_name", metavar="SERVICE")
@wait_options
def swap(service_name: str, no_wait: bool, timeout: float, as_json: bool) -> None:
    """VIP swap: staging becomes production and production becomes staging."""
    with _client() as c:
        op = c.swap(service_name)
        _finish(c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, done="swapped")


@click.command("scale")
@click.argument("service_name", metavar="SERVICE")
@click.argument("role")
@click.argument("count", type=click.IntRange(0, 1000))
@click.option("--slot", type=SLOT, default="production", show_default=True)
@wait_options
def scale(
    service_name: str,
    role: str,
    count: int,
    slot: str,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Set the instance count of ROLE."""
    with _client() as c:
        op = c.scale(service_name, slot, role, count)
        _finish(
            c,
            op,
            no_wait=no_wait,
            timeout=timeout,
            as_json=as_json,
            watch=(service_name, slot),
            done=f"{role} scaled to {count}",
        )


@click.command("config")
@click.argument("service_name", metavar="SERVICE")
@click.argument("config_file", type=click.Path(path_type=Path), metavar="F")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--mode", type=MODE, default="auto", show_default=True)
@wait_options
def config(
    service_name: str,
    config_file: Path,
    slot: str,
    mode: str,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Change the configuration (.cscfg) of a deployment."""
    text = _read_config(config_file)
    with _client() as c:
        op = c.change_configuration(service_name, slot, text, mode=mode)
        _finish(
            c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, watch=(service_name, slot)
        )


@click.command("upgrade")
@click.argument("service_name", metavar="SERVICE")
@click.argument("source", type=click.Path(path_type=Path), metavar="DIR|PKG")
@click.option("--config", "config_file", type=click.Path(path_type=Path))
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--mode", type=MODE, default="auto", show_default=True)
@click.option("--role", help="Upgrade only this role.")
@click.option("--force", is_flag=True, help="Allow an upgrade that loses local data.")
@click.option(
    "--plan", is_flag=True, help="Print what would change per update domain; change nothing."
)
@wait_options
def upgrade(
    service_name: str,
    source: Path,
    config_file: Path | None,
    slot: str,
    mode: str,
    role: str | None,
    force: bool,
    plan: bool,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Upgrade a deployment to a new package (and configuration), update domain by domain."""
    data, configuration = _package_bytes(source, config_file)
    with _client() as c:
        package = c.upload_package(data)["digest"]
        if plan:
            preview = c.upgrade_plan(
                service_name, slot, package=package, configuration=configuration, role=role
            )
            _emit(preview, as_json, lambda: _print_plan(preview))
            return
        op = c.upgrade(
            service_name,
            slot,
            package=package,
            configuration=configuration,
            mode=mode,
            role=role,
            force=force,
        )
        _finish(
            c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, watch=(service_name, slot)
        )


def _print_plan(preview: dict[str, Any]) -> None:
    for line in preview["changes"] or ["no change"]:
        click.echo(line)
    if not preview["allows_in_place"]:
        click.echo("this change needs a new deployment (deploy to staging, then swap)")
    for d in preview["domains"]:
        recycle, in_place = ", ".join(d["recycle"]) or "-", ", ".join(d["in_place"]) or "-"
        unchanged = ", ".join(d["unchanged"]) or "-"
        click.echo(
            f"update domain {d['update_domain']}: recycle {recycle}; in place {in_place}; "
            f"unchanged {unchanged}"
        )


@click.command("walk")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--domain", type=click.IntRange(0, 19), required=True, help="Update domain.")
@wait_options
def walk(
    service_name: str, slot: str, domain: int, no_wait: bool, timeout: float, as_json: bool
) -> None:
    """Manual mode: update the next update domain."""
    with _client() as c:
        op = c.walk(service_name, slot, domain)
        _finish(
            c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, watch=(service_name, slot)
        )


@click.command("rollback")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--mode", type=click.Choice(["auto", "manual"]), default="auto", show_default=True)
@click.option("--force", is_flag=True)
@wait_options
def rollback(
    service_name: str,
    slot: str,
    mode: str,
    force: bool,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Roll back the upgrade or configuration change in progress."""
    with _client() as c:
        op = c.rollback(service_name, slot, mode=mode, force=force)
        _finish(
            c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, watch=(service_name, slot)
        )


def _status_command(name: str, wanted: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("service_name", metavar="SERVICE")
    @click.option("--slot", type=SLOT, default="production", show_default=True)
    @wait_options
    def command(service_name: str, slot: str, no_wait: bool, timeout: float, as_json: bool) -> None:
        with _client() as c:
            op = c.update_status(service_name, slot, wanted)
            _finish(
                c,
                op,
                no_wait=no_wait,
                timeout=timeout,
                as_json=as_json,
                watch=(service_name, slot),
            )

    return command


suspend = _status_command("suspend", "Suspended", "Suspend a deployment (stop its instances).")
start = _status_command("start", "Running", "Start a suspended deployment.")


@click.command("delete")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT, help="Delete only this slot's deployment.")
@wait_options
def delete(
    service_name: str, slot: str | None, no_wait: bool, timeout: float, as_json: bool
) -> None:
    """Delete a deployment (--slot), or every deployment and then the service."""
    with _client() as c:
        slots = [slot] if slot else [d["slot"] for d in c.get_service(service_name)["deployments"]]
        for s in slots:
            op = c.delete_deployment(service_name, s)
            _finish(c, op, no_wait=no_wait, timeout=timeout, as_json=as_json, done=f"{s} deleted")
        if slot is None and not no_wait:
            c.delete_service(service_name)
            if not as_json:
                click.echo(f"service {service_name} deleted")


# -- instances -----------------------------------------------------------------------------------


@click.group("instance")
def instance() -> None:
    """Reboot, reimage, rebuild, delete or run a command in one role instance."""


@instance.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("service_name", metavar="SERVICE")
@click.argument("instance_id", metavar="INSTANCE")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 3600, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds before the command (and its process group) is killed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def exec_command(
    ctx: click.Context,
    service_name: str,
    instance_id: str,
    command: tuple[str, ...],
    slot: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Run COMMAND in an instance's context — its user, environment and approot — and exit
    with its exit code (the self-hosted answer to Azure's remote access).

    Example: cumulo instance exec guestbook WebRole_IN_0 -- python -c "print(42)"
    """
    with _client() as c:
        result = c.instance_exec(service_name, slot, instance_id, list(command), timeout=timeout)
    code = result.get("exit_code")
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(result.get("output", ""), nl=False)
        if result.get("timed_out"):
            click.echo(f"error: the command was killed after {timeout:g} s.", err=True)
    if code is None:
        ctx.exit(1)
    ctx.exit(code if code >= 0 else 128 - code)


def _instance_command(action: str, help_text: str) -> click.Command:
    @instance.command(action, help=help_text)
    @click.argument("service_name", metavar="SERVICE")
    @click.argument("instance_id", metavar="INSTANCE")
    @click.option("--slot", type=SLOT, default="production", show_default=True)
    @wait_options
    def command(
        service_name: str,
        instance_id: str,
        slot: str,
        no_wait: bool,
        timeout: float,
        as_json: bool,
    ) -> None:
        with _client() as c:
            if action == "delete":
                op = c.delete_instances(service_name, slot, [instance_id])
            else:
                op = c.instance_action(service_name, slot, instance_id, action)
            _finish(c, op, no_wait=no_wait, timeout=timeout, as_json=as_json)

    return command


_instance_command("reboot", "Restart the instance's processes; its disks are kept.")
_instance_command("reimage", "Fresh approot; local storage kept (Azure's reimage).")
_instance_command("rebuild", "Fresh approot and every local resource wiped.")
_instance_command("delete", "Remove the instance; its role's instance count drops by one.")


# -- logs ----------------------------------------------------------------------------------------


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of ``current`` (a log's tail now) not in ``previous`` (its tail before)."""
    for start in range(len(previous) + 1):
        overlap = previous[start:]
        if current[: len(overlap)] == overlap:
            return current[len(overlap) :]
    return current


class LogFollower:
    """Fetches the tails of instances' logs and yields only what is new since the last call."""

    NAMES = ("entry", "site")

    def __init__(
        self, client: Client, service: str, slot: str, role: str | None, instance: str | None
    ) -> None:
        self.c, self.service, self.slot = client, service, slot
        self.role, self.instance = role, instance
        self.seen: dict[tuple[str, str], list[str]] = {}

    def instances(self) -> list[str]:
        view = self.c.get_deployment(self.service, self.slot)
        return [
            i["id"]
            for i in view["instances"]
            if (self.role is None or i["role"] == self.role)
            and (self.instance is None or i["id"] == self.instance)
        ]

    def poll(self, tail: int) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for iid in self.instances():
            for name in self.NAMES:
                try:
                    text = self.c.instance_log(self.service, self.slot, iid, name, tail=tail)
                except NotFoundError:
                    continue
                lines = text.splitlines()
                fresh = new_lines(self.seen.get((iid, name), []), lines)
                self.seen[(iid, name)] = lines
                out += [(iid, name, line) for line in fresh]
        return out


def _print_log_lines(lines: list[tuple[str, str, str]], as_json: bool) -> None:
    for iid, name, line in lines:
        if as_json:
            click.echo(json.dumps({"instance": iid, "log": name, "line": line}))
        else:
            click.echo(f"[{iid}] {line}")
    sys.stdout.flush()


@click.command("logs")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT, default="production", show_default=True)
@click.option("--role", help="Only this role's instances.")
@click.option("--instance", "instance_id", help="Only this instance.")
@click.option("--tail", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
@json_option
def logs(
    service_name: str,
    slot: str,
    role: str | None,
    instance_id: str | None,
    tail: int,
    follow: bool,
    as_json: bool,
) -> None:
    """Print the logs (entry point or site) of a deployment's instances."""
    import time

    with _client() as c:
        follower = LogFollower(c, service_name, slot, role, instance_id)
        _print_log_lines(follower.poll(tail), as_json)
        while follow:
            time.sleep(1.0)
            _print_log_lines(follower.poll(max(tail, 500)), as_json)


# -- events and operations -----------------------------------------------------------------------


@click.command("events")
@click.argument("service_name", metavar="SERVICE")
@click.option("--slot", type=SLOT)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@json_option
def events(service_name: str, slot: str | None, follow: bool, as_json: bool) -> None:
    """The service's event history (operations, swaps, instance events)."""
    with _client() as c:
        source = (
            c.follow_events(service_name, slot=slot)
            if follow
            else iter(c.events(service_name, slot=slot))
        )
        for event in source:
            if as_json:
                click.echo(json.dumps(event, sort_keys=True))
            else:
                fields = " ".join(f"{k}={v}" for k, v in sorted(event["fields"].items()))
                where = event.get("slot") or "-"
                click.echo(f"{event['seq']:>6} {where:<10} {event['name']} {fields}".rstrip())
            sys.stdout.flush()


@click.group("operation")
def operation() -> None:
    """Look at an asynchronous operation."""


@operation.command("show")
@click.argument("operation_id", metavar="ID")
@json_option
def operation_show(operation_id: str, as_json: bool) -> None:
    """Show an operation's status (InProgress, Succeeded, Failed + error)."""
    with _client() as c:
        op = c.get_operation(operation_id)

    def text() -> None:
        click.echo(f"{op['id']} {op['kind']} {op['status']}")
        if op.get("error"):
            click.echo(f"  {op['error']['code']}: {op['error']['message']}")

    _emit(op, as_json, text)


@operation.command("wait")
@click.argument("operation_id", metavar="ID")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@json_option
def operation_wait(operation_id: str, timeout: float, as_json: bool) -> None:
    """Wait until an operation finishes; fail with its error if it failed."""
    with _client() as c:
        op = c.get_operation(operation_id)
        _finish(c, op, no_wait=False, timeout=timeout, as_json=as_json)


COMMANDS: list[click.Command] = [
    serve,
    run,
    dashboard,
    service,
    cert,
    deploy,
    status,
    swap,
    scale,
    config,
    upgrade,
    walk,
    rollback,
    suspend,
    start,
    delete,
    instance,
    events,
    logs,
    operation,
]
