"""A hosted site serves TLS on its https endpoints with the endpoint's certificate and plain HTTP
on its http endpoints, both at once: real host agent, real site processes (gunicorn for WSGI,
uvicorn for ASGI), real TLS clients (the ``ssl`` module) verifying the certificate. A response
still leaves in one write on a TLS socket (one TLS record). Certificate problems become one
sentence in the instance's detail, never a server traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cumulo.state.spec import CertificateSpec, EndpointSpec, EnvVarSpec, SiteSpec

from ...certs import issue  # type: ignore[import-not-found]
from .conftest import observed, run, running_agent, spec, state_is, wait_for, write_role

NAME = "web.cumulo.test"

WSGI = {
    "app.py": """
        import os
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/file":  # served with sendfile where the server can
                path = os.path.join(os.path.dirname(__file__), "big.txt")
                start_response("200 OK", [("Content-Length", str(os.path.getsize(path)))])
                return environ["wsgi.file_wrapper"](open(path, "rb"))
            body = f"{environ['wsgi.url_scheme']} {environ['PATH_INFO']}".encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
    """,
    "big.txt": "0123456789abcdef" * 20000,
}

ASGI = {
    "app.py": """
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            body = f"{scope['scheme']} {scope['path']}".encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
    """
}


def certificate(common_name: str = NAME) -> tuple[str, str, str]:
    """A self-signed server certificate for ``NAME``: (thumbprint, PEM with key, PEM alone)."""
    c = issue(common_name)
    return c.thumbprint, c.pem + c.key_pem, c.pem


def issued_chain() -> tuple[str, str, str, str, str]:
    """root -> intermediate -> leaf for ``NAME``: (leaf thumbprint, leaf PEM, leaf key PEM,
    intermediate PEM, root PEM)."""
    root = issue("Test Root", names=[])
    mid = issue("Test Intermediate", issuer=root, names=[])
    leaf = issue(NAME, issuer=mid, ca=False, names=[x509.DNSName(NAME)])
    return leaf.thumbprint, leaf.pem, leaf.key_pem, mid.pem, root.pem


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def tls_get(
    address: str, port: int, path: str, cafile: str, *, tls12: bool = False
) -> tuple[bytes, list[int]]:
    """GET ``path`` over TLS, verifying the server's certificate for ``NAME`` against
    ``cafile``. Returns the response and the content types of the TLS records that carried it
    (``tls12``: TLS 1.2, whose records show their type; 23 = application data)."""
    context = ssl.create_default_context(cafile=cafile)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=NAME)
    with socket.create_connection((address, port), timeout=10) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "the server closed the connection during the TLS handshake"
                incoming.write(data)
        tls.write(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        sock.sendall(outgoing.read())
        raw = b""
        response = b""
        while not _complete(response):
            data = sock.recv(65536)
            assert data, f"the connection closed after {response!r}"
            raw += data
            incoming.write(data)
            try:
                while chunk := tls.read(65536):  # b"" after the server's close_notify
                    response += chunk
            except ssl.SSLWantReadError:
                pass
    types = []
    while len(raw) >= 5:
        types.append(raw[0])
        raw = raw[5 + int.from_bytes(raw[3:5], "big") :]
    return response, types


def plain_get(address: str, port: int, path: str) -> bytes:
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def endpoint(agent: Any, key: str, name: str) -> tuple[str, int]:
    ep = next(e for e in observed(agent, key)["endpoints"] if e["name"] == name)
    return ep["address"], int(ep["local_port"])


BOTH = (
    EndpointSpec("Http", "input", "http", 80, "*"),
    EndpointSpec("Https", "input", "https", 443, "*", certificate="SSL"),
)


@pytest.mark.parametrize(
    "files,kind,server",
    [(WSGI, "wsgi", "gunicorn"), (ASGI, "asgi", "uvicorn"), (WSGI, "wsgi", "uvicorn")],
    ids=["wsgi-gunicorn", "asgi-uvicorn", "wsgi-uvicorn"],
)
def test_site_serves_tls_on_https_and_plain_http_on_http_at_once(
    tmp_path: Path,
    data_dir: Path,
    host_id: str,
    files: dict[str, str],
    kind: str,
    server: str,
) -> None:
    thumb, pem, public = certificate()
    cafile = tmp_path / "ca.pem"
    cafile.write_text(public)
    s = spec(
        write_role(tmp_path / "web", files),
        "Web",
        endpoints=BOTH,
        site=SiteSpec("Web", kind, "app:app"),  # type: ignore[arg-type]
        certificates=(CertificateSpec("SSL", thumb, pem),),
        environment=(EnvVarSpec("CUMULO_SITE_WSGI_SERVER", server),),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), 30, "ReadyRole")
            address, tls_port = endpoint(agent, s.key, "Https")
            _, http_port = endpoint(agent, s.key, "Http")
            reply, _ = await asyncio.to_thread(tls_get, address, tls_port, "/secure", str(cafile))
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply
            assert reply.endswith(b"\r\n\r\nhttps /secure")
            # headers and body leave in one write, so in one TLS record
            reply, records = await asyncio.to_thread(
                tls_get, address, tls_port, "/one", str(cafile), tls12=True
            )
            assert reply.endswith(b"\r\n\r\nhttps /one")
            assert records.count(23) == 1, records
            if server == "gunicorn":  # a file (sendfile on plain sockets) arrives whole over TLS
                reply, _ = await asyncio.to_thread(tls_get, address, tls_port, "/file", str(cafile))
                assert reply.endswith(b"\r\n\r\n" + b"0123456789abcdef" * 20000)
            plain = await asyncio.to_thread(plain_get, address, http_port, "/plain")
            assert plain.endswith(b"\r\n\r\nhttp /plain")
            # plain HTTP to the TLS port gets no HTTP answer
            refused = await asyncio.to_thread(plain_get, address, tls_port, "/")
            assert not refused.startswith(b"HTTP/1.1 200"), refused
            assert observed(agent, s.key)["state"] == "ReadyRole"

    run(body())


def test_site_with_only_an_https_binding(tmp_path: Path, data_dir: Path, host_id: str) -> None:
    thumb, pem, public = certificate()
    cafile = tmp_path / "ca.pem"
    cafile.write_text(public)
    s = spec(
        write_role(tmp_path / "web", WSGI),
        "Web",
        endpoints=BOTH,
        site=SiteSpec("Web", "wsgi", "app:app", bindings=("Https",)),
        certificates=(CertificateSpec("SSL", thumb, pem),),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), 30, "ReadyRole")
            reply, _ = await asyncio.to_thread(
                tls_get, *endpoint(agent, s.key, "Https"), "/", str(cafile)
            )
            assert reply.endswith(b"\r\n\r\nhttps /")

    run(body())


@pytest.mark.parametrize(
    "how", ["added with its chain", "intermediate in the CA store", "leaf alone"]
)
def test_site_sends_the_intermediate_certificates(
    tmp_path: Path, data_dir: Path, host_id: str, how: str
) -> None:
    thumb, leaf, key, mid, root = issued_chain()
    cafile = tmp_path / "root.pem"
    cafile.write_text(root)  # the client trusts the root only
    if how == "added with its chain":
        certs = (CertificateSpec("SSL", thumb, leaf + mid + key),)
    elif how == "leaf alone":  # the client cannot verify it: the intermediate is missing
        certs = (CertificateSpec("SSL", thumb, leaf + key),)
    else:  # Azure: <Certificate name="Intermediate" storeName="CA"> beside the SSL certificate
        mid_thumb = x509.load_pem_x509_certificate(mid.encode()).fingerprint(hashes.SHA1())
        certs = (
            CertificateSpec("SSL", thumb, leaf + key),
            CertificateSpec("Intermediate", mid_thumb.hex().upper(), mid, store_name="CA"),
        )
    s = spec(
        write_role(tmp_path / "web", WSGI),
        "Web",
        endpoints=BOTH,
        site=SiteSpec("Web", "wsgi", "app:app"),
        certificates=certs,
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), 30, "ReadyRole")
            address = endpoint(agent, s.key, "Https")
            if how == "leaf alone":
                with pytest.raises(ssl.SSLCertVerificationError):
                    await asyncio.to_thread(tls_get, *address, "/chain", str(cafile))
                return
            reply, _ = await asyncio.to_thread(tls_get, *address, "/chain", str(cafile))
            assert reply.endswith(b"\r\n\r\nhttps /chain")

    run(body())


def _failure(agent: Any, key: str) -> str:
    o = observed(agent, key)
    return str(o["detail"]) if o["state"] in ("FailedStartingRole", "CyclingRole") else ""


@pytest.mark.parametrize("problem", ["no key", "other key", "no certificate", "elevated key"])
def test_certificate_problems_are_one_sentence(
    tmp_path: Path, data_dir: Path, host_id: str, problem: str
) -> None:
    thumb, pem, public = certificate()
    _, other, other_public = certificate("other")
    certs = (CertificateSpec("SSL", thumb, pem),)
    if problem == "no key":
        certs = (CertificateSpec("SSL", thumb, public),)
    elif problem == "other key":
        certs = (CertificateSpec("SSL", thumb, public + other.removeprefix(other_public)),)
    elif problem == "no certificate":
        certs = ()
    elif problem == "elevated key":
        if os.geteuid() != 0:
            pytest.skip("needs root to run a limited user")
        certs = (CertificateSpec("SSL", thumb, pem, permission_level="elevated"),)
    s = spec(
        write_role(tmp_path / "web", WSGI),
        "Web",
        endpoints=BOTH,
        site=SiteSpec("Web", "wsgi", "app:app"),
        certificates=certs,
    )
    expected = {
        "no key": f"Certificate 'SSL' (thumbprint {thumb}) of the https endpoint 'Https' of "
        "role 'Web' has no private key",
        "other key": f".key does not match the certificate {data_dir}",
        "no certificate": "names certificate 'SSL', which this instance was not given",
        "elevated key": "has permissionLevel 'elevated', so the limited site cannot read",
    }[problem]

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            detail = await wait_for(lambda: _failure(agent, s.key), 20, "the failure")
            assert "the entry point cannot start: " in detail
            assert expected in detail, detail
            assert "Traceback" not in detail
            # the same sentence is in the instance's events (the deployment's history)
            reasons = [e.get("reason", "") for e in agent.events if e["event"] == "instance.state"]
            assert any(expected in r for r in reasons), reasons
            assert observed(agent, s.key)["pid"] is None  # no site was started

    run(body())
