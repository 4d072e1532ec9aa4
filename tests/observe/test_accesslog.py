"""The access log: one valid JSON line per request, whatever bytes any field holds.

Unit tests feed the writer hostile strings in every field (quotes, backslashes, every
control, latin-1 bytes, lone surrogates, attempts to forge a field) and drawn ones from
hypothesis; a real gateway run then logs paths and trace ids a client chose.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp
from wxgated.observe.accesslog import AccessLog

FIELDS = ("trace_id", "route", "method", "path", "upstream", "target", "client_ip")


def fake_request(**fields: str) -> SimpleNamespace:
    base = dict(trace_id="t-1", route="api", method="GET", path="/api/x", upstream="svc",
                target="http://10.0.0.5:8080", client_ip="203.0.113.9")
    base.update(fields)
    return SimpleNamespace(trace_id=base["trace_id"], route=SimpleNamespace(name=base["route"]),
                           method=base["method"], orig_path=base["path"],
                           upstream=base["upstream"], target=base["target"],
                           client_ip=base["client_ip"], upstream_ms=1.5, reason="")


def written(requests: list[SimpleNamespace]) -> bytes:
    """What the writer puts on its fd for these requests (one loop tick, one write)."""
    r, w = os.pipe()
    try:
        log = AccessLog(fd=w)

        async def go() -> None:
            for req in requests:
                log.log(req, 200, 10, 20, 0.002)
            await asyncio.sleep(0)  # the batched flush

        asyncio.run(go())
        os.close(w)
        w = -1
        out = b""
        while chunk := os.read(r, 1 << 16):
            out += chunk
        return out
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def same(text: str) -> str:
    """`text` as JSON gives it back: an escaped high+low surrogate pair is one character."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")


def parsed(raw: bytes) -> list[dict[str, Any]]:
    text = raw.decode("utf-8")  # strict: a line must be valid UTF-8
    assert text.endswith("\n")
    return [json.loads(line) for line in text[:-1].split("\n")]


HOSTILE = [
    'a"b', "a\\b", '\\"', '", "status": 999, "x": "', "\x00", "\r\n{\"forged\":1}\n",
    "".join(map(chr, range(0x20))), "\x7f", "".join(map(chr, range(0x80, 0x100))),
    "\ud800", "a\udfffb", "\ud83d\ude00", "\u2028\u2029", "你好", "\ufeff", "",
    bytes(range(256)).decode("latin-1"),  # what a latin-1-decoded raw path can hold
]


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_is_escaped(field: str) -> None:
    reqs = [fake_request(**{field: v}) for v in HOSTILE]
    lines = parsed(written(reqs))
    assert len(lines) == len(HOSTILE)
    for line, value in zip(lines, HOSTILE, strict=True):
        assert line[field] == same(value)
        assert line["status"] == 200 and "forged" not in line and "x" not in line


def test_plain_fields_take_the_fast_path_unchanged() -> None:
    raw = written([fake_request()])
    assert raw.isascii() and b"\\" not in raw
    line = parsed(raw)[0]
    assert {k: line[k] for k in FIELDS} == {
        "trace_id": "t-1", "route": "api", "method": "GET", "path": "/api/x",
        "upstream": "svc", "target": "http://10.0.0.5:8080", "client_ip": "203.0.113.9"}
    assert line["upstream_ms"] == 1.5 and line["bytes_in"] == 10 and line["bytes_out"] == 20


def test_one_hostile_field_does_not_disturb_the_others() -> None:
    line = parsed(written([fake_request(path='/x"\\\x00\udc80')]))[0]
    assert line["path"] == '/x"\\\x00\udc80' and line["target"] == "http://10.0.0.5:8080"


def test_events_with_hostile_text_are_valid_lines() -> None:
    r, w = os.pipe()
    try:
        log = AccessLog(fd=w)
        log.event("error", 'reload "failed"\n', issue="bad \udc80 byte\x00", n=3)
        os.close(w)
        w = -1
        line = parsed(os.read(r, 1 << 16))[0]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert line["msg"] == 'reload "failed"\n' and line["issue"] == "bad \udc80 byte\x00"


_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({f: _TEXT for f in FIELDS}))
def test_drawn_fields_round_trip(fields: dict[str, str]) -> None:
    line = parsed(written([fake_request(**fields)]))[0]
    assert {f: line[f] for f in FIELDS} == {f: same(v) for f, v in fields.items()}


# -- through a real gateway -----------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    server = ThreadedApp(app)
    yield server
    server.stop()


def raw_get(port: int, target: bytes, extra: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\n" + extra
                  + b"Connection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(1 << 16):
            out += chunk
    return out.split(b"\r\n", 1)[0]


# what the HTTP parser lets through to the log: quotes, backslashes, JSON look-alikes
PATHS = [b'/api/a"b', b"/api/a\\b", b'/api/x?q=","status":1,"y":"', b"/api/\\u0000%22",
         b'/nothing"here\\', b"/api/'\"}{]["]
TRACE_IDS = [b"t\xe9\xff", b"t}{,:x", b"t\"\\", b"t\x85", b"\xa0\xa0"]


def test_gateway_lines_are_json(upstream: ThreadedApp, tmp_path: Any) -> None:
    config = {"upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
              # backslashes would be refused by default: let them reach the log
              "server": {"escaped_slashes": "keep"},
              "routes": [{"name": "api", "match": {"path": "/api/*rest"}, "upstream": "svc"}]}
    gw = GatewayProcess(tmp_path, config).start()
    try:
        sent = []
        for i, path in enumerate(PATHS):
            tid = TRACE_IDS[i % len(TRACE_IDS)]
            status = raw_get(gw.port, path, b"X-Trace-Id: " + tid + b"\r\n")
            assert status.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")), (path, status)
            sent.append(path.decode("latin-1").partition("?")[0])  # the log has no query
        deadline = time.monotonic() + 5
        while len(gw.stdout().splitlines()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gw.stop()
    raw = gw.stdout_path.read_bytes()
    lines = parsed(raw)  # every line, not only the ones that happen to parse
    assert [ln["path"] for ln in lines if "path" in ln] == sent
    assert {ln["trace_id"] for ln in lines if "path" in ln} >= {"t\xe9\xff", "t}{,:x"}
