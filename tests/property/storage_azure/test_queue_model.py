"""The queue service against a simple model: counts, visibility, expiry, pop receipts."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.storage.azure.db import Database
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import Request, parse_target
from cumulo.storage.azure.queue import QueueService
from cumulo.storage.azure.service_props import ServiceProperties

BODY = b"<QueueMessage><MessageText>m</MessageText></QueueMessage>"

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from([-1, 5, 50]), st.sampled_from([0, 3])),
        st.tuples(st.just("get"), st.integers(1, 5), st.sampled_from([1, 10])),
        st.tuples(st.just("delete"), st.integers(0, 10), st.booleans()),
        st.tuples(st.just("clear"), st.just(0), st.just(0)),
        st.tuples(st.just("tick"), st.sampled_from([1, 4, 20]), st.just(0)),
    ),
    max_size=40,
)


def _req(method: str, target: str, body: bytes = b"") -> Request:
    path, raw, query = parse_target(target)
    return Request(method, target, path, raw, {}, body, "", query)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_queue_matches_a_model(script: list[tuple[str, int, Any]]) -> None:
    now = [1000.0]
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "q.db", "off")
        svc = QueueService(db, lambda: now[0], ServiceProperties(db, None))
        svc.create_queue(_req("PUT", "/a/qqq"), "a", "qqq")
        # model: id -> [expires, visible, pop]
        model: dict[str, list[Any]] = {}
        received: list[tuple[str, str]] = []
        for op, a, b in script:
            t = now[0]
            if op == "put":
                resp = svc.put_message(
                    _req("POST", f"/a/qqq/messages?messagettl={a}&visibilitytimeout={b}", BODY),
                    "a",
                    "qqq",
                )
                mid = re.search(rb"<MessageId>(.*?)</MessageId>", resp.body).group(1).decode()  # type: ignore[union-attr]
                model[mid] = [float("inf") if a == -1 else t + a, t + b, None]
            elif op == "get":
                resp = svc.get_messages(
                    _req("GET", f"/a/qqq/messages?numofmessages={a}&visibilitytimeout={b}"),
                    "a",
                    "qqq",
                )
                got = re.findall(
                    rb"<MessageId>(.*?)</MessageId><InsertionTime>.*?<PopReceipt>(.*?)</PopReceipt>",
                    resp.body,
                )
                live = sorted(
                    (m for m, (exp, vis, _p) in model.items() if exp > t and vis <= t),
                    key=lambda m: model[m][1],
                )
                assert len(got) == min(a, len(live))
                for mid_b, pop_b in got:
                    mid, pop = mid_b.decode(), pop_b.decode()
                    assert mid in live
                    model[mid][1] = t + b
                    model[mid][2] = pop
                    received.append((mid, pop))
            elif op == "delete" and received:
                mid, pop = received[a % len(received)]
                if not b:
                    pop = "wrong" + pop
                alive = mid in model and model[mid][0] > t
                try:
                    svc.delete_message(
                        _req("DELETE", f"/a/qqq/messages/{mid}?popreceipt={pop}"), "a", "qqq", mid
                    )
                    assert alive and model[mid][2] == pop
                    del model[mid]
                except StorageError as exc:
                    if not alive:
                        assert exc.code == "MessageNotFound"
                    else:
                        assert exc.code == "PopReceiptMismatch"
                        assert model[mid][2] != pop
            elif op == "clear":
                svc.clear("a", "qqq")
                model.clear()
            elif op == "tick":
                now[0] += a
            t = now[0]
            props = svc.get_properties("a", "qqq")
            count = int(dict(props.headers)["x-ms-approximate-messages-count"])
            assert count == sum(1 for exp, _v, _p in model.values() if exp > t)
            for gone in [m for m, v in model.items() if v[0] <= t]:
                del model[gone]
        db.close()
