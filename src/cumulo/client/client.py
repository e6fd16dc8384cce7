"""``Client``: one method per API route (see ``cumulo.api.app.ENDPOINTS`` and docs/api.md)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cumulo import errors
from cumulo.errors import CumuloError, InputError, ModelError, Problem, TemporaryError

DONE = ("Succeeded", "Failed")


def default_home() -> Path:
    """The data directory a local platform uses (``$CUMULO_HOME`` or the user's data dir)."""
    home = os.environ.get("CUMULO_HOME")
    if home:
        return Path(home)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cumulo"


def _classes() -> dict[str, type[CumuloError]]:
    out: dict[str, type[CumuloError]] = {}
    todo: list[type[CumuloError]] = [CumuloError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return out


_BY_STATUS: dict[int, type[CumuloError]] = {
    400: errors.InputError,
    401: errors.AuthError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    412: errors.ConflictError,
    503: errors.TemporaryError,
}


def error_from_problem(status: int, body: Any) -> CumuloError:
    """The ``cumulo.errors`` exception for a problem+json answer, keeping its ``code``."""
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "")
    detail = str(body.get("detail") or f"The API answered HTTP {status}.")
    if code == ModelError.code and isinstance(body.get("problems"), list):
        return ModelError(
            [
                Problem(str(p.get("file", "")), p.get("line"), str(p.get("message", "")))
                for p in body["problems"]
                if isinstance(p, dict)
            ]
        )
    cls = _classes().get(code) or _BY_STATUS.get(status) or errors.InternalError
    exc = cls.__new__(cls)
    CumuloError.__init__(exc, detail)
    if isinstance(exc, TemporaryError):
        exc.retry_after = 1.0
    if code and code != cls.code:
        exc.code = code  # a code the client does not know by class (e.g. SwapNotAllowed)
    exc.http_status = status
    if "operation" in body:
        exc.operation_id = body["operation"]  # type: ignore[attr-defined]
    return exc


class Client:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        ca: str | None = None,
    ) -> None:
        """``ca``: a PEM file of the certificate(s) to verify an https API with, instead of the
        system's trusted authorities (a self-signed API certificate)."""
        self.url = url.rstrip("/")
        self.token = token
        verify: ssl.SSLContext | bool = True
        if ca:
            try:
                verify = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"The API's CA file {ca} cannot be used ({exc}).") from None
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "cumulo-client"},
            transport=transport,
            timeout=timeout,
            verify=verify,
        )

    @classmethod
    def from_environment(cls, home: str | os.PathLike[str] | None = None) -> Client:
        url = os.environ.get("CUMULO_URL")
        token = os.environ.get("CUMULO_TOKEN")
        ca = os.environ.get("CUMULO_CA") or None
        if url and token:
            return cls(url, token, ca=ca)
        data = Path(home) if home is not None else default_home()
        try:
            endpoint = json.loads((data / "api.json").read_text(encoding="utf-8"))
            found_url = url or str(endpoint["url"])
            found_token = token or (data / "api-token").read_text(encoding="ascii").strip()
            ca = ca or endpoint.get("ca")
        except FileNotFoundError:
            raise TemporaryError(
                f"No cumulo platform found in {data} (no api.json); start one with "
                "'cumulo serve', or set CUMULO_URL and CUMULO_TOKEN."
            ) from None
        except (ValueError, KeyError, OSError) as exc:
            raise InputError(f"{data / 'api.json'} cannot be read ({exc}).") from None
        return cls(found_url, found_token, ca=ca)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TemporaryError(
                f"Cannot reach the cumulo API at {self.url} ({type(exc).__name__}); "
                "is 'cumulo serve' running?"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
            raise error_from_problem(response.status_code, body)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    @staticmethod
    def _slot(service: str, slot: str) -> str:
        return f"/v1/services/{quote(service, safe='')}/deploymentslots/{quote(slot, safe='')}"

    @staticmethod
    def _if_match(etag: str | None) -> dict[str, str]:
        return {"If-Match": etag} if etag else {}

    # -- services ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/v1/health")
        return result

    def list_services(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/services")["services"])

    def create_service(
        self, name: str, *, label: str = "", description: str = ""
    ) -> dict[str, Any]:
        body = {"name": name, "label": label, "description": description}
        result: dict[str, Any] = self._json("POST", "/v1/services", json=body)
        return result

    def get_service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/services/{quote(name, safe='')}")
        return result

    def delete_service(self, name: str) -> None:
        self._request("DELETE", f"/v1/services/{quote(name, safe='')}")

    # -- certificates --------------------------------------------------------------------------

    def add_certificate(
        self, service: str, data: bytes, *, password: str | None = None, filename: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"data": base64.b64encode(data).decode(), "filename": filename}
        if password is not None:
            body["password"] = password
        result: dict[str, Any] = self._json(
            "POST", f"/v1/services/{quote(service, safe='')}/certificates", json=body
        )
        return result

    def list_certificates(self, service: str) -> list[dict[str, Any]]:
        return list(
            self._json("GET", f"/v1/services/{quote(service, safe='')}/certificates")[
                "certificates"
            ]
        )

    def delete_certificate(self, service: str, thumbprint: str) -> None:
        self._request(
            "DELETE",
            f"/v1/services/{quote(service, safe='')}/certificates/{quote(thumbprint, safe='')}",
        )

    # -- autoscale -----------------------------------------------------------------------------

    def _autoscale(self, service: str, slot: str, role: str) -> str:
        return f"{self._slot(service, slot)}/roles/{quote(role, safe='')}/autoscale"

    def set_autoscale(
        self, service: str, slot: str, role: str, setting: dict[str, Any]
    ) -> dict[str, Any]:
        """Set a role's autoscale setting (capacity and rules; docs/autoscale.md); returns it
        as stored, every default written out."""
        result: dict[str, Any] = self._json(
            "PUT", self._autoscale(service, slot, role), json=setting
        )
        return result

    def get_autoscale(self, service: str, slot: str, role: str) -> dict[str, Any]:
        """A role's setting and its last evaluation (``status``: values, decision, last action)."""
        result: dict[str, Any] = self._json("GET", self._autoscale(service, slot, role))
        return result

    def list_autoscale(self, service: str) -> list[dict[str, Any]]:
        return list(
            self._json("GET", f"/v1/services/{quote(service, safe='')}/autoscale")["settings"]
        )

    def delete_autoscale(self, service: str, slot: str, role: str) -> None:
        """Autoscale off for a role (its instance count stays)."""
        self._request("DELETE", self._autoscale(service, slot, role))

    # -- packages ------------------------------------------------------------------------------

    def upload_package(self, data: bytes) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            "/v1/packages",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    # -- deployments ---------------------------------------------------------------------------

    def create_deployment(
        self,
        service: str,
        slot: str,
        *,
        package: str,
        configuration: str,
        name: str = "",
        label: str = "",
        start: bool = True,
    ) -> dict[str, Any]:
        body = {
            "package": package,
            "configuration": configuration,
            "name": name,
            "label": label,
            "start": start,
        }
        result: dict[str, Any] = self._json("POST", self._slot(service, slot), json=body)
        return result

    def get_deployment(self, service: str, slot: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", self._slot(service, slot))
        return result

    def delete_deployment(
        self, service: str, slot: str, *, etag: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "DELETE", self._slot(service, slot), headers=self._if_match(etag)
        )
        return result

    def update_status(
        self, service: str, slot: str, status: str, *, etag: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            self._slot(service, slot) + "/status",
            json={"status": status},
            headers=self._if_match(etag),
        )
        return result

    def change_configuration(
        self,
        service: str,
        slot: str,
        configuration: str,
        *,
        mode: str = "auto",
        etag: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            self._slot(service, slot) + "/config",
            json={"configuration": configuration, "mode": mode},
            headers=self._if_match(etag),
        )
        return result

    def scale(
        self, service: str, slot: str, role: str, count: int, *, etag: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            self._slot(service, slot) + "/scale",
            json={"role": role, "count": count},
            headers=self._if_match(etag),
        )
        return result

    def upgrade(
        self,
        service: str,
        slot: str,
        *,
        package: str,
        configuration: str | None = None,
        mode: str = "auto",
        role: str | None = None,
        force: bool = False,
        etag: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"package": package, "mode": mode, "force": force}
        if configuration is not None:
            body["configuration"] = configuration
        if role is not None:
            body["role"] = role
        result: dict[str, Any] = self._json(
            "POST", self._slot(service, slot) + "/upgrade", json=body, headers=self._if_match(etag)
        )
        return result

    def upgrade_plan(
        self,
        service: str,
        slot: str,
        *,
        package: str,
        configuration: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"package": package, "plan": True}
        if configuration is not None:
            body["configuration"] = configuration
        if role is not None:
            body["role"] = role
        result: dict[str, Any] = self._json(
            "POST", self._slot(service, slot) + "/upgrade", json=body
        )
        return result

    def walk(self, service: str, slot: str, domain: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", self._slot(service, slot) + "/walk", json={"domain": domain}
        )
        return result

    def rollback(
        self, service: str, slot: str, *, mode: str = "auto", force: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", self._slot(service, slot) + "/rollback", json={"mode": mode, "force": force}
        )
        return result

    def swap(self, service: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/services/{quote(service, safe='')}/swap")
        return result

    def instance_action(
        self, service: str, slot: str, instance: str, action: str
    ) -> dict[str, Any]:
        path = f"{self._slot(service, slot)}/roleinstances/{quote(instance, safe='')}/{action}"
        result: dict[str, Any] = self._json("POST", path)
        return result

    def delete_instances(
        self, service: str, slot: str, instances: list[str], *, etag: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            self._slot(service, slot) + "/roleinstances:delete",
            json={"instances": instances},
            headers=self._if_match(etag),
        )
        return result

    def instance_exec(
        self, service: str, slot: str, instance: str, argv: list[str], *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Run ``argv`` in the instance's context: ``{exit_code, output, timed_out, host}``."""
        path = f"{self._slot(service, slot)}/roleinstances/{quote(instance, safe='')}/exec"
        result: dict[str, Any] = self._json(
            "POST", path, json={"argv": argv, "timeout": timeout}, timeout=timeout + 30
        )
        return result

    def instance_log(
        self, service: str, slot: str, instance: str, name: str, *, tail: int = 200
    ) -> str:
        path = f"{self._slot(service, slot)}/roleinstances/{quote(instance, safe='')}/logs/{name}"
        return self._request("GET", path, params={"tail": tail}).text

    # -- operations and events -----------------------------------------------------------------

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/operations/{quote(operation_id, safe='')}")
        return result

    def list_operations(self, service: str) -> list[dict[str, Any]]:
        return list(
            self._json("GET", f"/v1/services/{quote(service, safe='')}/operations")["operations"]
        )

    def wait(
        self,
        operation_id: str,
        *,
        timeout: float = 3600.0,
        interval: float = 0.5,
        progress: Callable[[dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Poll an operation until it finishes; raise its error if it failed."""
        deadline = monotonic() + timeout
        while True:
            op = self.get_operation(operation_id)
            if progress is not None:
                progress(op)
            if op["status"] in DONE:
                break
            if monotonic() > deadline:
                raise TemporaryError(
                    f"Operation {operation_id} is still in progress after {timeout:.0f} s; "
                    f"follow it with 'cumulo operation wait {operation_id}'."
                )
            sleep(interval)
        if op["status"] == "Failed":
            error = op.get("error") or {}
            raise error_from_problem(
                int(op.get("http_status") or 500),
                {"code": error.get("code"), "detail": error.get("message")},
            )
        return op

    def events(
        self, service: str, *, after: int = 0, slot: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if slot is not None:
            params["slot"] = slot
        return list(
            self._json("GET", f"/v1/services/{quote(service, safe='')}/events", params=params)[
                "events"
            ]
        )

    def follow_events(
        self,
        service: str,
        *,
        slot: str | None = None,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[dict[str, Any]]:
        """Every event, then new ones as they come (until the caller stops iterating)."""
        after = 0
        while True:
            batch = self.events(service, after=after, slot=slot)
            yield from batch
            if batch:
                after = int(batch[-1]["seq"])
            else:
                sleep(interval)
