"""Request authentication: SharedKey (blob/queue and the table variant), SharedKeyLite, SAS.

Pure functions over a parsed request: no I/O. The string-to-sign rules are Azure's, as the
SDKs compute them (see docs/storage.md, "Authentication"):

* SharedKey (blob, queue): verb, 11 standard headers, the ``x-ms-*`` headers sorted with the
  service's culture-aware comparator ('-' ignored at the first level), then
  ``/account/path`` and each query parameter ``\\nname:value`` sorted by name.
* SharedKey (table): verb, Content-MD5, Content-Type, x-ms-date (or Date), ``/account/path``
  and ``?comp=`` if present.
* SAS: account SAS (``ss``/``srt``) and service SAS (``sr`` for blob; queue; ``tn`` for table),
  checked for signature, time window, protocol, IP and the permission the operation needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cmp_to_key, lru_cache
from urllib.parse import unquote

from cumulo.storage.azure.accounts import Account
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import Request

# -- the service's header order ---------------------------------------------------------------
# Level-0 weights of printable ASCII (0 = ignored at this level), as the service sorts.
_LV0: dict[str, int] = {}
for _ch, _w in zip("!#$%&*+.^_`|~", (0x71C, 0x71F, 0x721, 0x723, 0x725, 0x72D, 0x803, 0x733,
                                      0x743, 0x744, 0x748, 0x74C, 0x750), strict=True):  # fmt: skip
    _LV0[_ch] = _w
for _ch, _w in zip("0123456789", (0xD03, 0xD1A, 0xD1C, 0xD1E, 0xD20, 0xD22, 0xD24, 0xD26, 0xD28,
                                  0xD2A), strict=True):  # fmt: skip
    _LV0[_ch] = _w
_LETTER_WEIGHTS = (0xE02, 0xE09, 0xE0A, 0xE1A, 0xE21, 0xE23, 0xE25, 0xE2C, 0xE32, 0xE35, 0xE36,
                   0xE48, 0xE51, 0xE70, 0xE7C, 0xE7E, 0xE89, 0xE8A, 0xE91, 0xE99, 0xE9F, 0xEA2,
                   0xEA4, 0xEA6, 0xEA7, 0xEA9)  # fmt: skip
for _i, _w in enumerate(_LETTER_WEIGHTS):
    _LV0[chr(ord("a") + _i)] = _w
    _LV0[chr(ord("A") + _i)] = _w
# Level-4 weights: only the apostrophe and the hyphen count.
_LV4: dict[str, int] = {"'": 0x8012, "-": 0x8212}


def header_compare(lhs: str, rhs: str) -> int:
    """Compare two header names the way the Storage service orders them for SharedKey."""
    tables = (_LV0, _LV4)
    level, i, j = 0, 0, 0
    while level < len(tables):
        if level == len(tables) - 1 and i != j:
            return -1 if i > j else 1
        table = tables[level]
        w1 = table.get(lhs[i], 0) if i < len(lhs) else 1
        w2 = table.get(rhs[j], 0) if j < len(rhs) else 1
        if w1 == 1 and w2 == 1:
            i = j = 0
            level += 1
        elif w1 == w2:
            i += 1
            j += 1
        elif w1 == 0:
            i += 1
        elif w2 == 0:
            j += 1
        else:
            return -1 if w1 < w2 else 1
    return 0


_HEADER_KEY = cmp_to_key(header_compare)

_STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def sign(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


@lru_cache(maxsize=256)
def _ordered(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` in the service's order (an SDK sends the same few sets again and again)."""
    return tuple(sorted(names, key=_HEADER_KEY))


def canonical_headers(headers: Mapping[str, str]) -> str:
    names = _ordered(tuple(n for n in headers if n.startswith("x-ms-")))
    return "".join([f"{n}:{headers[n]}\n" for n in names])


def canonical_query(raw_query: list[tuple[str, str]]) -> str:
    last: dict[str, str] = {}
    for name, value in raw_query:
        last[name] = value
    return "".join(f"\n{name.lower()}:{unquote(last[name])}" for name in sorted(last))


def shared_key_string(req: Request, account: str) -> str:
    """The SharedKey string-to-sign for blob and queue requests."""
    values = []
    for name in _STANDARD_HEADERS:
        value = req.headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        values.append(value)
    return (
        req.method
        + "\n"
        + "\n".join(values)
        + "\n"
        + canonical_headers(req.headers)
        + "/"
        + account
        + req.raw_path
        + canonical_query(req.raw_query)
    )


def _comp_suffix(req: Request) -> str:
    for name, value in req.raw_query:
        if name == "comp":
            return "?comp=" + value
    return ""


def table_shared_key_string(req: Request, account: str) -> str:
    """The SharedKey string-to-sign of the table service."""
    date = req.headers.get("x-ms-date") or req.headers.get("date", "")
    return (
        f"{req.method}\n{req.headers.get('content-md5', '')}\n"
        f"{req.headers.get('content-type', '')}\n{date}\n"
        f"/{account}{req.raw_path}{_comp_suffix(req)}"
    )


def shared_key_lite_string(req: Request, account: str, service: str) -> str:
    """The SharedKeyLite string-to-sign (table: date + resource; blob/queue: a short form)."""
    resource = f"/{account}{req.raw_path}{_comp_suffix(req)}"
    if service == "table":
        date = req.headers.get("x-ms-date") or req.headers.get("date", "")
        return f"{date}\n{resource}"
    return (
        f"{req.method}\n{req.headers.get('content-md5', '')}\n"
        f"{req.headers.get('content-type', '')}\n{req.headers.get('date', '')}\n"
        f"{canonical_headers(req.headers)}{resource}"
    )


# -- what an operation needs -------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """What an operation requires of a SAS.

    ``rtype`` is the account-SAS resource type (s service, c container/queue/table, o object);
    ``perms`` the permission letters any one of which allows it (account SAS);
    ``service_perms`` the same for a service SAS (defaults to ``perms``);
    ``container``/``blob``/``queue``/``table`` name the resource a service SAS must cover.
    """

    rtype: str
    perms: str
    service_perms: str | None = None
    container: str | None = None
    blob: str | None = None
    queue: str | None = None
    table: str | None = None
    policy: Callable[[str], dict[str, str] | None] | None = None
    """Looks up a stored access policy (``si``) of the resource: {"st", "se", "sp"}."""
    all_perms: str = ""
    """Letters that must all be granted (e.g. an upsert needs both add and update)."""
    anonymous: bool = False
    """True when the resource is publicly readable (a blob container's public access level)."""


def _denied(code: str, message: str, status: int = 403) -> StorageError:
    return StorageError(status, code, message)


def _auth_failed(detail: str) -> StorageError:
    return StorageError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        f"is formed correctly including the signature. {detail}",
    )


def parse_sas_time(value: str, name: str) -> datetime:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _auth_failed(f"The SAS field {name}={value!r} is not an ISO 8601 time.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _check_common(q: Mapping[str, str], now: datetime, peer: str) -> None:
    expiry = q.get("se")
    if not expiry:
        raise _auth_failed("The SAS has no expiry (se), in itself or in its stored policy.")
    if now >= parse_sas_time(expiry, "se"):
        raise _auth_failed("Signed expiry time has passed (the SAS is expired).")
    start = q.get("st")
    if start and now < parse_sas_time(start, "st"):
        raise _auth_failed("Signed start time is in the future (the SAS is not yet valid).")
    protocol = q.get("spr")
    if protocol and "http" not in [p.strip() for p in protocol.split(",")]:
        raise _denied(
            "AuthorizationProtocolMismatch",
            "This request is not authorized to perform this operation using this protocol.",
        )
    sip = q.get("sip")
    if sip and peer:
        host = peer.rsplit(":", 1)[0]
        try:
            ip = ipaddress.ip_address(host)
            low, _, high = sip.partition("-")
            lo = ipaddress.ip_address(low)
            hi = ipaddress.ip_address(high) if high else lo
            inside = lo.version == ip.version == hi.version and lo <= ip <= hi  # type: ignore[operator]
        except ValueError:
            inside = False
        if not inside:
            raise _denied(
                "AuthorizationSourceIPMismatch",
                "This request is not authorized to perform this operation using this source IP.",
            )


def _granted(sp: str, any_of: str, all_of: str) -> bool:
    return any(p in sp for p in any_of) and all(p in sp for p in all_of)


def _letter(service: str) -> str:
    return {"blob": "b", "queue": "q", "table": "t"}[service]


def check_account_sas(
    q: Mapping[str, str], account: Account, service: str, need: Need, now: datetime, peer: str
) -> None:
    version = q.get("sv", "")
    text = (
        f"{account.name}\n{q.get('sp', '')}\n{q.get('ss', '')}\n{q.get('srt', '')}\n"
        f"{q.get('st', '')}\n{q.get('se', '')}\n{q.get('sip', '')}\n{q.get('spr', '')}\n"
        f"{version}\n"
    )
    if version >= "2020-12-06":
        text += q.get("ses", "") + "\n"
    if not hmac.compare_digest(sign(account.key, text), q.get("sig", "")):
        raise _auth_failed("The SAS signature does not match.")
    _check_common(q, now, peer)
    if _letter(service) not in q.get("ss", ""):
        raise _denied(
            "AuthorizationServiceMismatch",
            "This request is not authorized to perform this operation using this service.",
        )
    if need.rtype not in q.get("srt", ""):
        raise _denied(
            "AuthorizationResourceTypeMismatch",
            "This request is not authorized to perform this operation using this resource type.",
        )
    if not _granted(q.get("sp", ""), need.perms, need.all_perms):
        raise _denied(
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )


def _service_sas_string(q: Mapping[str, str], service: str, resource: str) -> str:
    g = q.get
    head = f"{g('sp', '')}\n{g('st', '')}\n{g('se', '')}\n{resource}\n"
    if service == "queue":
        text = head + f"{g('si', '')}\n{g('sip', '')}\n{g('spr', '')}\n{g('sv', '')}\n"
    elif service == "table":
        text = (
            head
            + f"{g('si', '')}\n{g('sip', '')}\n{g('spr', '')}\n{g('sv', '')}\n"
            + f"{g('spk', '')}\n{g('srk', '')}\n{g('epk', '')}\n{g('erk', '')}\n"
        )
    else:
        text = (
            head + f"{g('si', '')}\n{g('sip', '')}\n{g('spr', '')}\n{g('sv', '')}\n{g('sr', '')}\n"
        )
        text += f"{g('snapshot', '')}\n"  # the snapshot time, when the URL names one
        if g("sv", "") >= "2020-12-06":
            text += f"{g('ses', '')}\n"
        text += (
            f"{g('rscc', '')}\n{g('rscd', '')}\n{g('rsce', '')}\n{g('rscl', '')}\n{g('rsct', '')}\n"
        )
    return text[:-1] if text.endswith("\n") else text


def _service_resources(
    q: Mapping[str, str], account: str, service: str, need: Need
) -> list[str] | None:
    """The canonical resources the SAS may be signed for, or None if it cannot cover the op."""
    if service == "queue":
        if need.queue is None:
            return None
        return [f"/queue/{account}/{need.queue}"]
    if service == "table":
        tn = q.get("tn", "")
        if need.table is None or tn.lower() != need.table.lower():
            return None
        return [f"/table/{account}/{tn.lower()}", f"/table/{account}/{tn}"]
    if need.container is None:
        return None
    sr = q.get("sr", "")
    if sr == "c":
        return [f"/blob/{account}/{need.container}"]
    if sr == "b" and need.blob is not None:
        return [f"/blob/{account}/{need.container}/{need.blob}"]
    return None


def check_service_sas(
    q: Mapping[str, str], account: Account, service: str, need: Need, now: datetime, peer: str
) -> None:
    resources = _service_resources(q, account.name, service, need)
    if resources is None:
        raise _denied(
            "AuthorizationResourceTypeMismatch",
            "This request is not authorized to perform this operation using this resource type.",
        )
    sig = q.get("sig", "")
    if not any(
        hmac.compare_digest(sign(account.key, _service_sas_string(q, service, r)), sig)
        for r in resources
    ):
        raise _auth_failed("The SAS signature does not match.")
    si = q.get("si")
    if si:
        policy = need.policy(si) if need.policy is not None else None
        if policy is None:
            raise _auth_failed(f"The stored access policy {si!r} does not exist on the resource.")
        merged = dict(q)
        for field in ("st", "se", "sp"):
            if policy.get(field):
                if q.get(field):
                    raise _auth_failed(
                        f"The SAS field {field} is set both in the URL and in policy {si!r}."
                    )
                merged[field] = policy[field]
        q = merged
    _check_common(q, now, peer)
    perms = need.service_perms if need.service_perms is not None else need.perms
    if not _granted(q.get("sp", ""), perms, need.all_perms):
        raise _denied(
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )


def authenticate(
    req: Request, account: Account, service: str, need: Need, now: datetime | None = None
) -> None:
    """Raise StorageError(403, ...) unless the request is signed for ``account`` and allowed."""
    auth = req.headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        name, _, signature = rest.strip().rpartition(":")
        if name != account.name:
            raise _auth_failed(f"The account in the Authorization header is {name!r}.")
        if scheme == "SharedKey":
            if service == "table":
                text = table_shared_key_string(req, account.name)
            else:
                text = shared_key_string(req, account.name)
        elif scheme == "SharedKeyLite":
            text = shared_key_lite_string(req, account.name, service)
        else:
            raise _auth_failed(f"The authorization scheme {scheme!r} is not supported.")
        if not hmac.compare_digest(sign(account.key, text), signature):
            raise _auth_failed(
                "The MAC signature found in the HTTP request is not the same as any computed "
                "signature."
            )
        return
    q = req.query
    if "sig" in q:
        moment = now or datetime.now(UTC)
        if "ss" in q or "srt" in q:
            check_account_sas(q, account, service, need, moment, req.peer)
        else:
            check_service_sas(q, account, service, need, moment, req.peer)
            if service == "table" and any(q.get(k) for k in ("spk", "srk", "epk", "erk")):
                req.key_range = (
                    q.get("spk", ""),
                    q.get("srk", ""),
                    q.get("epk", ""),
                    q.get("erk", ""),
                )
        return
    if need.anonymous:
        return
    raise StorageError(
        403,
        "NoAuthenticationInformation",
        "Server failed to authenticate the request. Please refer to the information in the "
        "www-authenticate header.",
    )
