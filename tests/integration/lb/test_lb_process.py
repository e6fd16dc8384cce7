"""The load balancer as a real process on real sockets: slots, swap under load, failover,
drain, ACLs, instance input endpoints, probes, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest


def _table(h: Any, prod: dict[str, int], stag: dict[str, int], version: int = 1, **ep: Any) -> dict:
    return {
        "version": version,
        "slots": {
            "production": {"deployment": "d-a", "endpoints": {"Http": h.endpoint(prod, **ep)}},
            "staging": {"deployment": "d-b", "endpoints": {"Http": h.endpoint(stag, **ep)}},
        },
    }


class Load:
    """Threads sending requests on fresh connections until stopped; counts answers and failures."""

    def __init__(self, h: Any, ports: list[int], threads: int = 4) -> None:
        self.h = h
        self.ports = ports
        self.ok = 0
        self.failures: list[str] = []
        self.answers: dict[int, list[str]] = {p: [] for p in ports}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        n = i
        while not self.stop.is_set():
            port = self.ports[n % len(self.ports)]
            n += 1
            try:
                body = self.h.fetch(port)
            except OSError as exc:
                with self.lock:
                    self.failures.append(f"{port}: {exc!r}")
                continue
            with self.lock:
                self.ok += 1
                self.answers[port].append(body)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)

    def wait_more(self, n: int) -> None:
        target = self.ok + n
        self.h.wait_until(lambda: self.ok >= target, timeout=20)


def test_each_slot_serves_its_deployment_and_a_taken_port_walks(
    backends, start_lb, helpers
) -> None:
    a, _ = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        table = _table(helpers, {"A0": a}, {"B0": b})
        table["slots"]["production"]["endpoints"]["Walk"] = helpers.endpoint(
            {"A0": a}, publicPort=busy
        )
        answer = lb.put(table)
        walked = next(x for x in answer["listeners"] if x["endpoint"] == "Walk")
        assert walked["declaredPort"] == busy
        assert busy < walked["port"] < busy + 100
        assert helpers.fetch(walked["port"]) == "A"
    assert helpers.fetch(lb.port("production", "Http")) == "A"
    assert helpers.fetch(lb.port("staging", "Http")) == "B"


def test_swap_under_concurrent_load_fails_no_request(backends, start_lb, helpers) -> None:
    a, _ = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    lb.put(_table(helpers, {"A0": a}, {"B0": b}))
    prod, stag = lb.port("production", "Http"), lb.port("staging", "Http")
    swap_ms = []
    with Load(helpers, [prod, stag]) as load:
        for _ in range(20):
            load.wait_more(10)
            answer = lb.swap()
            swap_ms.append(answer["swapMs"])
            assert {x["port"] for x in answer["listeners"]} == {prod, stag}  # no listener moved
        load.wait_more(10)
    assert load.failures == []
    assert max(swap_ms) < 10
    assert set(load.answers[prod]) == set(load.answers[stag]) == {"A", "B"}
    assert helpers.fetch(prod) == "A" and helpers.fetch(stag) == "B"  # 20 swaps: back to the start


def test_a_backend_killed_mid_load_costs_no_failed_connection(backends, start_lb, helpers) -> None:
    ports = {}
    procs = {}
    for name in ("A", "B", "C"):
        ports[name], procs[name] = backends.start(name)
    lb = start_lb()
    lb.put(_table(helpers, ports, {}))
    vip = lb.port("production", "Http")
    with Load(helpers, [vip]) as load:
        load.wait_more(100)
        procs["B"].send_signal(signal.SIGKILL)
        procs["B"].wait(timeout=10)
        seen = len(load.answers[vip])
        load.wait_more(300)
    assert load.failures == []
    after = load.answers[vip][seen + 20 :]
    assert "B" not in after and {"A", "C"} <= set(after)
    assert (
        lb.metric("cumulo_lb_endpoint_connect_failures_total", slot="production", endpoint="Http")
        >= 1
    )


def test_an_open_connection_survives_removal_until_the_drain_timeout(
    backends, start_lb, helpers
) -> None:
    a, _ = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    table = _table(helpers, {"A0": a}, {})
    table["drainTimeoutSeconds"] = 1.0
    lb.put(table)
    vip = lb.port("production", "Http")
    with socket.create_connection(("127.0.0.1", vip), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert helpers.read_response(sock) == "A"
        table = _table(helpers, {"B0": b}, {}, version=2)
        table["drainTimeoutSeconds"] = 1.0
        lb.put(table)
        removed_at = time.monotonic()
        assert helpers.fetch(vip) == "B"  # new connections go to the remaining instance
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert helpers.read_response(sock) == "A"  # the open one stays where it was
        assert lb.metric("cumulo_lb_draining_backends") == 1
        sock.settimeout(10)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed
        assert 0.8 <= time.monotonic() - removed_at < 5


def test_acl_denies_at_accept_and_permits_the_allowed_subnet(backends, start_lb, helpers) -> None:
    a, _ = backends.start("A")
    lb = start_lb()
    deny = [{"order": 1, "action": "deny", "remoteSubnet": "127.0.0.0/8"}]
    lb.put(_table(helpers, {"A0": a}, {}, acl=deny))
    vip = lb.port("production", "Http")
    with pytest.raises(OSError):
        helpers.fetch(vip)
    assert lb.metric("cumulo_lb_endpoint_denied_total", slot="production", endpoint="Http") == 1
    permit = [
        {"order": 1, "action": "permit", "remoteSubnet": "127.0.0.1/32"},
        {"order": 2, "action": "deny", "remoteSubnet": "127.0.0.0/8"},
    ]
    lb.put(_table(helpers, {"A0": a}, {}, version=2, acl=permit))
    assert helpers.fetch(vip) == "A"


def test_instance_input_endpoints_map_one_to_one(backends, start_lb, helpers) -> None:
    instances = []
    for i in range(3):
        port, _ = backends.start(f"W_IN_{i}")
        instances.append({"instance": f"W_IN_{i}", "publicPort": 0, "port": port})
    lb = start_lb()
    answer = lb.put(
        {
            "version": 1,
            "slots": {
                "production": {"instanceInputEndpoints": {"Debug": {"instances": instances}}}
            },
        }
    )
    listeners = [x for x in answer["listeners"] if x["kind"] == "instanceInput"]
    assert len({x["port"] for x in listeners}) == 3
    for x in listeners:
        (backend,) = x["backends"]
        name = backend.split("@")[0]
        assert all(helpers.fetch(x["port"]) == name for _ in range(3))


def test_an_instance_back_in_rotation_is_not_skipped_for_its_old_refusals(
    backends, start_lb, helpers
) -> None:
    """A killed instance refuses connections and is skipped for a while; when the controller
    puts it back (Ready again, on the same address and port) it gets connections at once."""
    a, proc = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    table = _table(helpers, {"A0": a, "B0": b}, {}, distribution="roundRobin")
    lb.put(table)
    vip = lb.port("production", "Http")
    assert {helpers.fetch(vip) for _ in range(4)} == {"A", "B"}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert {helpers.fetch(vip) for _ in range(4)} == {"B"}  # A refused: retried on B, skipped
    out = _table(helpers, {"A0": a, "B0": b}, {}, version=2, distribution="roundRobin")
    out["slots"]["production"]["endpoints"]["Http"]["backends"][0]["routable"] = False
    lb.put(out)
    backends.start("A", port=a)  # restarted on its port, Ready again
    lb.put(_table(helpers, {"A0": a, "B0": b}, {}, version=3, distribution="roundRobin"))
    assert "A" in {helpers.fetch(vip) for _ in range(4)}


def test_a_backend_that_closes_before_the_client_spoke_is_retried(
    backends, start_lb, helpers
) -> None:
    """A dying site worker closes the connections it accepted, without a byte, sometimes before
    the client's request has even reached the LB. Nothing was sent either way, so the client is
    moved to another backend rather than disconnected."""
    closer, _ = backends.start("--closer")
    b, _ = backends.start("B")
    lb = start_lb()
    lb.put(_table(helpers, {"A0": closer, "B0": b}, {}, distribution="roundRobin"))
    vip = lb.port("production", "Http")
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", vip), timeout=5) as sock:
            time.sleep(0.2)  # the scenario: a client slow to send; the closer closed meanwhile
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert helpers.read_response(sock) == "B"


def test_unroutable_instances_get_no_new_connections(backends, start_lb, helpers) -> None:
    a, _ = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    table = _table(helpers, {"A0": a, "B0": b}, {})
    table["slots"]["production"]["endpoints"]["Http"]["backends"][1]["routable"] = False
    lb.put(table)
    vip = lb.port("production", "Http")
    assert {helpers.fetch(vip) for _ in range(30)} == {"A"}
    response = lb.http.post("/v1/instances/B0/routable", json={"routable": True})
    assert response.status_code == 200
    assert helpers.wait_until(lambda: helpers.fetch(vip) == "B")
    response = lb.http.post("/v1/instances/A0/routable", json={"routable": False})
    assert {helpers.fetch(vip) for _ in range(30)} == {"B"}


def test_a_route_put_answers_once_new_backends_were_probed(backends, start_lb, helpers) -> None:
    """With a custom probe a new backend is out of rotation until its first probe passes; the
    PUT waits for that first probe, so the VIP answers as soon as the PUT has."""
    a, _ = backends.start("A", health_delay=0.3)
    lb = start_lb()
    probe = {"protocol": "http", "path": "/health", "intervalSeconds": 15, "timeoutSeconds": 31}
    lb.put(_table(helpers, {"A0": a}, {}, probe=probe))
    assert helpers.fetch(lb.port("production", "Http")) == "A"


def test_a_custom_probe_takes_a_failing_instance_out(backends, start_lb, helpers, tmp_path) -> None:
    sick = tmp_path / "sick"
    sick.touch()
    a, _ = backends.start("A")
    b, _ = backends.start("B", sick_file=sick)
    lb = start_lb()
    probe = {"protocol": "http", "path": "/health", "intervalSeconds": 0.05, "timeoutSeconds": 0.3}
    lb.put(_table(helpers, {"A0": a, "B0": b}, {}, probe=probe))
    vip = lb.port("production", "Http")

    def in_rotation() -> list[str]:
        listeners = lb.http.get("/v1/listeners").json()["listeners"]
        return next(x["backends"] for x in listeners if x["slot"] == "production")

    helpers.wait_until(lambda: len(in_rotation()) == 1)
    assert {helpers.fetch(vip) for _ in range(20)} == {"A"}
    sick.unlink()
    helpers.wait_until(lambda: len(in_rotation()) == 2)
    sick.touch()
    helpers.wait_until(lambda: len(in_rotation()) == 1)


def test_idle_connections_are_closed_after_the_idle_timeout(backends, start_lb, helpers) -> None:
    a, _ = backends.start("A")
    lb = start_lb()
    lb.put(_table(helpers, {"A0": a}, {}, idleTimeoutSeconds=0.3))
    with socket.create_connection(("127.0.0.1", lb.port("production", "Http")), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert helpers.read_response(sock) == "A"
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
        assert 0.25 <= time.monotonic() - started < 5


def test_a_restarted_lb_serves_its_last_routes_and_shows_a_new_boot_id(
    backends, start_lb, helpers, tmp_path
) -> None:
    a, _ = backends.start("A")
    state = tmp_path / "lb-routes.json"
    lb = start_lb(state_file=state)
    lb.put(_table(helpers, {"A0": a}, {}, version=7))
    first_boot = lb.boot_id
    lb.stop(signal.SIGKILL)
    again = start_lb(state_file=state)
    assert again.boot_id != first_boot
    assert again.http.get("/healthz").json()["version"] == 7
    assert helpers.fetch(again.port("production", "Http")) == "A"
    # without its state file a new LB starts empty; the controller notices the new bootId and
    # pushes its table again
    fresh = start_lb()
    assert fresh.http.get("/healthz").json()["version"] == 0
    fresh.put(_table(helpers, {"A0": a}, {}, version=7))
    assert helpers.fetch(fresh.port("production", "Http")) == "A"


def test_the_api_needs_the_token_and_explains_bad_tables(start_lb, helpers) -> None:
    lb = start_lb()
    assert httpx.get(lb.api + "/v1/routes").status_code == 401
    bad = {
        "version": 1,
        "slots": {"production": {"endpoints": {"Dns": {"publicPort": 53, "protocol": "udp"}}}},
    }
    response = lb.http.put("/v1/routes", json=bad)
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "InvalidRouteTable"
    assert "protocol 'udp' is not supported" in problem["detail"]
    lb.put({"version": 5, "slots": {}})
    response = lb.http.put("/v1/routes", json={"version": 4, "slots": {}})
    assert response.status_code == 409
    assert "older than the current version 5" in response.json()["detail"]
    assert lb.http.post("/v1/instances/nobody/routable", json={"routable": True}).status_code == 404
    assert lb.http.post("/v1/swap", json={"version": "x"}).status_code == 400


def test_metrics_count_connections_and_bytes(backends, start_lb, helpers) -> None:
    a, _ = backends.start("A")
    lb = start_lb()
    lb.put(_table(helpers, {"A0": a}, {}))
    vip = lb.port("production", "Http")
    for _ in range(5):
        helpers.fetch(vip)
    labels = {"slot": "production", "endpoint": "Http"}
    helpers.wait_until(lambda: lb.metric("cumulo_lb_endpoint_connections_active", **labels) == 0)
    assert lb.metric("cumulo_lb_endpoint_connections_total", **labels) == 5
    assert lb.metric("cumulo_lb_endpoint_bytes_out_total", **labels) > 5 * 30
    assert lb.metric("cumulo_lb_backend_connections_total", instance="A0") == 5


def test_a_vip_that_cannot_be_opened_is_refused_and_the_old_table_stays(
    backends, start_lb, helpers
) -> None:
    a, _ = backends.start("A")
    lb = start_lb()
    lb.put(_table(helpers, {"A0": a}, {}))
    vip = lb.port("production", "Http")
    table = _table(helpers, {"A0": a}, {}, version=2)
    table["slots"]["staging"]["address"] = "192.0.2.1"  # TEST-NET-1: not on this machine
    response = lb.http.put("/v1/routes", json=table)
    assert response.status_code == 409
    assert "cannot listen on 192.0.2.1:0 for staging endpoint 'Http'" in response.json()["detail"]
    assert lb.http.get("/healthz").json()["version"] == 1
    assert helpers.fetch(vip) == "A"


def test_bulk_bytes_pass_intact_both_ways_with_half_close(backends, start_lb, helpers) -> None:
    echo, _ = backends.start("--echo")
    lb = start_lb()
    lb.put(_table(helpers, {"E0": echo}, {}))
    payload = os.urandom(8 << 20)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", lb.port("production", "Http")), timeout=20) as sock:

        def read_all() -> None:
            while chunk := sock.recv(1 << 20):
                received.extend(chunk)

        reader = threading.Thread(target=read_all)
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the LB passes the half-close on; the echo answers BYE
        reader.join(timeout=30)
    assert bytes(received) == payload + b"BYE"
    helpers.wait_until(
        lambda: lb.metric("cumulo_lb_backend_bytes_in_total", instance="E0") == len(payload)
    )


def test_a_restarted_lb_pulls_its_routes_from_the_controller(backends, start_lb, helpers) -> None:
    """`--controller-url`: a fresh LB (no state file) asks the controller for its table."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    a, _ = backends.start("A")
    table = json.dumps(_table(helpers, {"A0": a}, {}, version=9)).encode()
    seen_tokens: list[str] = []

    class Controller(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_tokens.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(table)))
            self.end_headers()
            self.wfile.write(table)

        def log_message(self, *args: object) -> None:
            pass

    controller = ThreadingHTTPServer(("127.0.0.1", 0), Controller)
    thread = threading.Thread(target=controller.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{controller.server_address[1]}/lb/routes"
        lb = start_lb(extra=["--controller-url", url])
        helpers.wait_until(lambda: lb.http.get("/healthz").json()["version"] == 9)
        assert helpers.fetch(lb.port("production", "Http")) == "A"
        assert seen_tokens and seen_tokens[0].startswith("Bearer ")
    finally:
        controller.shutdown()
        controller.server_close()
        thread.join(timeout=10)


def test_metrics_show_backends_out_of_rotation_and_forget_removed_ones(
    backends, start_lb, helpers
) -> None:
    a, _ = backends.start("A")
    b, _ = backends.start("B")
    lb = start_lb()
    table = _table(helpers, {"A0": a, "B0": b}, {})
    table["slots"]["production"]["endpoints"]["Http"]["backends"][1]["routable"] = False
    lb.put(table)
    assert lb.metric("cumulo_lb_backend_in_rotation", instance="A0") == 1
    assert lb.metric("cumulo_lb_backend_in_rotation", instance="B0") == 0
    lb.put(_table(helpers, {"A0": a}, {}, version=2))
    assert 'instance="B0"' not in lb.http.get("/metrics").text
