"""Black-box: the proxy's callback fast path, through a real `wxgated run`.

A body-less request on an `upstream:` route whose filters all decide synchronously is
written on an idle keep-alive upstream connection and answered from the upstream
protocol's callback; anything that needs waiting (no idle connection, a stale one, a
retry, a streamed answer) is handed to the coroutine path. Seen from outside, both
paths must behave alike: these tests warm the upstream pools first (so the request
under test finds an idle connection and takes the fast path), then check what a client
gets and what the upstreams really received, against the same request with a body
that waits for `100 Continue` (which always takes the coroutine path) where that
comparison makes sense. Small Content-Length bodies that arrive with their head take
the fast path too (section 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.e2e_backend import Backend, get_many, send
from tests.support.e2e_identity_harness import HS_KEYS, Client, StandIn, base_config, header_values
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.rawhttp import raw_exchange, read_response
from tests.support.servers import LoopThread, ThreadedApp, free_port

BIG = random.Random(20240601).randbytes(5 << 20)  # 5 MiB, no repeating blocks
BIG_SHA = hashlib.sha256(BIG).hexdigest()
NO_PASSIVE = {"enabled": False}


# --- upstreams -------------------------------------------------------------------------


def svc_app() -> web.Application:
    """Echoes method, path and headers (after an optional `?s=` sleep); serves BIG."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.json_response({
            "method": request.method, "path": request.path_qs, "len": len(body),
            "headers": [[k.lower(), v] for k, v in request.headers.items()]})

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if request.query.get("chunked"):
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(BIG)
        await resp.prepare(request)
        # aiohttp sends what is written, HEAD or not; ?leak=1 lets a HEAD answer leak
        if request.method != "HEAD" or request.query.get("leak"):
            for i in range(0, len(BIG), 1 << 18):
                await resp.write(BIG[i:i + (1 << 18)])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class OneShotUpstream:
    """Answers the first request on each connection with a keep-alive 200, then closes
    the connection when the next request arrives on it, without a byte of answer: what
    an upstream whose keep-alive timer fired just as the gateway reused the connection
    looks like from the gateway. `rst` closes with a reset instead of a FIN."""

    def __init__(self, lt: LoopThread, rst: bool) -> None:
        self.rst = rst
        self.connections = 0
        self.answered = 0
        self.dropped = 0
        self.server = lt.run(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if served:
                    self.dropped += 1
                    if self.rst:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    break
                served += 1
                self.answered += 1
                path = head.split(b" ", 2)[1]
                body = json.dumps({"conn": conn, "path": path.decode()}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def svc() -> Iterator[ThreadedApp]:
    app = ThreadedApp(svc_app())
    yield app
    app.stop()


@pytest.fixture(scope="module")
def stale(loop_thread: LoopThread) -> dict[str, OneShotUpstream]:
    return {"fin": OneShotUpstream(loop_thread, rst=False),
            "rst": OneShotUpstream(loop_thread, rst=True)}


@pytest.fixture(scope="module")
def short_keepalive(loop_thread: LoopThread) -> Iterator[str]:
    """An aiohttp upstream that closes keep-alive connections idle for 100 ms."""

    async def start() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(svc_app(), access_log=None, keepalive_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"

    runner, url = loop_thread.run(start())
    yield url
    loop_thread.run(runner.cleanup())


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    started = {n: Backend(n).start() for n in ("R1", "R2", "R3", "S1", "S2")}
    yield started
    for b in started.values():
        b.stop()


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


def proxied(name: str, upstream: str, *filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """`/NAME/...` proxied to `upstream` as `/...`."""
    return {"name": name, "match": {"path": f"/{name}/*rest"},
            "filters": [*filters, {"strip_prefix": 1}], "upstream": upstream, **extra}


@pytest.fixture(scope="module")
def gw(svc: ThreadedApp, stale: dict[str, OneShotUpstream], short_keepalive: str,
       backends: dict[str, Backend], standin: StandIn,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = base_config(standin.url, svc.url, HS_KEYS)  # wechat login, jwt, upstream svc
    b = backends
    cfg["upstreams"].update({
        "stale-fin": {"targets": [{"url": stale["fin"].url}]},
        "stale-rst": {"targets": [{"url": stale["rst"].url}]},
        "shortka": {"targets": [{"url": short_keepalive}]},
        "r503": {"targets": [{"url": b["R1"].url}, {"url": b["R2"].url}],
                 "passive_health": NO_PASSIVE, "retries": {"attempts": 2, "on": [503]}},
        "rdead": {"targets": [{"url": f"http://127.0.0.1:{free_port()}"},
                              {"url": b["R3"].url}],
                  "passive_health": NO_PASSIVE,
                  "retries": {"attempts": 2, "on": ["connect_error"]}},
        "deadline": {"targets": [{"url": b["S1"].url}, {"url": b["S2"].url}],
                     "passive_health": NO_PASSIVE,
                     "retries": {"attempts": 3, "on": ["timeout"],
                                 "per_try_timeout": "400ms", "deadline": "600ms"}},
    })
    limit = {"rate_limit": {"rate": 2, "per": "10s", "key": "header.X-Bucket",
                            "store": "local"}}
    cfg["routes"] += [
        proxied("fp", "svc"),
        proxied("short", "svc", timeout="200ms"),
        proxied("stale-fin", "stale-fin"),
        proxied("stale-rst", "stale-rst"),
        proxied("shortka", "shortka"),
        proxied("r503", "r503"),
        proxied("rdead", "rdead"),
        proxied("deadline", "deadline"),
        proxied("guard", "svc", limit, {"jwt_auth": {}}),
        proxied("capped", "svc", max_body="100"),
        {"name": "only-get", "match": {"path": "/only-get", "methods": ["GET"]},
         "upstream": "svc"},
    ]
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-fast"), cfg).start()
    yield proc
    proc.stop()


# --- a raw HTTP/1.1 client (pipelining needs one) ----------------------------------------


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: fast.test", *extra, "", ""]).encode()


async def warm(gw: GatewayProcess, path: str, n: int = 1) -> None:
    """Leave idle keep-alive connections in the route's upstream pool(s)."""
    results = await get_many(gw.url + path, n)
    assert [s for s, _, _ in results] == [200] * n


# --- 1. stale keep-alive connections -----------------------------------------------------


@pytest.mark.parametrize("close", ["fin", "rst"])
async def test_stale_keepalive_connection_is_retried_on_a_fresh_one(
        gw: GatewayProcess, stale: dict[str, OneShotUpstream], close: str) -> None:
    up = stale[close]
    async with aiohttp.ClientSession() as s:
        results = [await send(s, f"{gw.url}/stale-{close}/n{i}") for i in range(6)]
    assert [r[0] for r in results] == [200] * 6, results
    assert [r[2]["path"] for r in results] == [f"/n{i}" for i in range(6)]
    # every request after the first found the pooled connection dead (the upstream
    # closed it on the request, without answering) and went again on a new one
    assert up.dropped == 5 and up.answered == 6
    assert len({r[2]["conn"] for r in results}) == 6


async def test_upstream_closing_idle_connections_never_gives_a_502(
        gw: GatewayProcess) -> None:
    # keepalive_timeout 100ms upstream; requests every ~100ms race its closes
    statuses = []
    async with aiohttp.ClientSession() as s:
        for i in range(8):
            status, _, doc = await send(s, f"{gw.url}/shortka/k{i}")
            statuses.append((status, doc.get("path") if isinstance(doc, dict) else doc))
            await asyncio.sleep(0.1)
    assert statuses == [(200, f"/k{i}") for i in range(8)]


# --- 2. pipelining behind a fast request -------------------------------------------------


@pytest.mark.parametrize("first", ["/fp/echo?id=1&s=0.2", "/fp/big", "/fp/big?chunked=1",
                                   "/nowhere"])
async def test_pipelined_requests_behind_a_fast_one_are_answered_in_order(
        gw: GatewayProcess, first: str) -> None:
    await warm(gw, "/fp/warm")
    data = get(first) + get("/fp/echo?id=2") + get("/fp/echo?id=3", "Connection: close")
    answers, rest = await raw_exchange(gw.port, data, 3)
    status, _, body = answers[0]
    if first.startswith("/fp/big"):
        assert status == 200 and hashlib.sha256(body).hexdigest() == BIG_SHA
    elif first == "/nowhere":
        assert status == 404 and json.loads(body)["code"] == 404
    else:
        assert status == 200 and json.loads(body)["path"] == "/echo?id=1&s=0.2"
    assert [(s, json.loads(b)["path"]) for s, _, b in answers[1:]] == [
        (200, "/echo?id=2"), (200, "/echo?id=3")]
    assert answers[2][1].get("connection") == "close" and rest == b""


# --- 3. retries that start on the fast path ----------------------------------------------


async def test_listed_503_from_a_fast_try_is_retried_on_the_other_target(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    r1, r2 = backends["R1"], backends["R2"]
    await warm(gw, "/r503/warm", 2)  # an idle connection to each target
    r1.status = 503
    try:
        results = await get_many(gw.url + "/r503/g", 6)
    finally:
        r1.status = 200
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R2")}
    assert r1.hits["/g"] >= 2 and r2.hits["/g"] == 6  # R1's 503s were retried, once each
    assert metric_value(gw.metrics(), "wxgated_upstream_requests_total", upstream="r503",
                        target=r1.url, status="503") == r1.hits["/g"]


async def test_connect_error_on_a_dead_target_is_retried(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    await warm(gw, "/rdead/warm", 2)
    results = await get_many(gw.url + "/rdead/ce", 6)
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R3")}
    assert backends["R3"].hits["/ce"] == 6


async def test_retry_deadline_covers_the_fast_first_try(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    """per_try_timeout 400ms, deadline 600ms, attempts 3: a 400ms try, a second one cut
    to what the deadline left, no third; 504 by ~600ms. The deadline is shared by all
    tries, including a first one made on the fast path."""
    s1, s2 = backends["S1"], backends["S2"]
    await warm(gw, "/deadline/warm", 2)
    s1.delay = s2.delay = 1.0
    try:
        t0 = time.monotonic()
        status, _, doc = (await get_many(gw.url + "/deadline/d", 1))[0]
        elapsed = time.monotonic() - t0
    finally:
        s1.delay = s2.delay = 0.0
    tries = s1.hits["/d"] + s2.hits["/d"]
    assert (status, doc["code"]) == (504, 504)
    assert (tries, elapsed < 0.9) == (2, True), f"{tries} tries, 504 after {elapsed:.2f}s"


# --- 4. a streamed answer handed over from the fast path ---------------------------------


@pytest.mark.parametrize("query", ["", "?chunked=1"])
async def test_large_answer_arrives_whole(gw: GatewayProcess, query: str) -> None:
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as s:
        for method in ("GET", "HEAD"):
            async with s.request(method, f"{gw.url}/fp/big{query}") as r:
                body = await r.read()
                assert r.status == 200
                if method == "GET":
                    assert len(body) == len(BIG) and hashlib.sha256(body).hexdigest() == BIG_SHA
                else:
                    assert body == b""
                    if not query:  # the length the GET has, not the (empty) body's
                        assert r.headers["Content-Length"] == str(len(BIG))
        # the connection the big answer came on is reusable, and carries no leftovers
        status, _, doc = await send(s, f"{gw.url}/fp/after-big")
        assert status == 200 and doc["path"] == "/after-big"


async def test_head_answer_without_a_known_length_gets_none(gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"HEAD /fp/big?chunked=1 HTTP/1.1\r\nHost: fast.test\r\n"
                 b"Connection: close\r\n\r\n")
    head = (await reader.read()).lower()
    writer.close()
    assert head.startswith(b"http/1.1 200") and head.endswith(b"\r\n\r\n")
    assert b"content-length: 0" not in head  # the GET's length is unknown, not zero


async def test_head_answer_that_leaks_a_body_does_not_poison_the_pool(
        gw: GatewayProcess) -> None:
    """An upstream that sends body bytes after a HEAD answer has spoiled that
    connection: it must not be reused for the next request (which got a 502)."""
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{gw.url}/fp/big?leak=1") as r:
            assert r.status == 200
        for i in range(5):
            status, _, doc = await send(s, f"{gw.url}/fp/after-leak-{i}")
            assert (status, doc["path"]) == (200, f"/after-leak-{i}")


# --- 5. filters on the fast path behave like on the coroutine path -----------------------


RL = ("ratelimit-limit", "ratelimit-remaining", "retry-after", "www-authenticate")


async def test_rate_limit_and_jwt_auth_answers_match_the_coroutine_path(
        gw: GatewayProcess, standin: StandIn) -> None:
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as session:
        client = Client(session)
        token, _ = await client.login(gw.url, standin.wx, "o-fast", unionid="u-fast")
        seen: dict[str, list[tuple[int, dict[str, str | None]]]] = {}
        for method, body in (("GET", None), ("POST", {"a": 1})):
            bucket = {"X-Bucket": f"b-{method}"}
            if body is not None:  # a body that waits for 100 Continue: the coroutine path
                bucket["Expect"] = "100-continue"
            steps = []
            for tok in (None, token, token):
                status, doc, headers = await client.call(method, gw.url + "/guard/who", body,
                                                         token=tok, headers=bucket)
                steps.append((status, {k: headers.get(k) for k in RL}))
                if status == 200:
                    assert header_values(doc, "x-wx-openid") == ["o-fast"]
                    assert header_values(doc, "x-wx-unionid") == ["u-fast"]
                    assert doc["method"] == method and doc["path"] == "/who"
                else:
                    assert doc["code"] == status and doc["trace_id"]
            seen[method] = steps
    get_steps = seen["GET"]
    assert [s for s, _ in get_steps] == [401, 200, 429]
    assert get_steps[0][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "1",
                               "retry-after": None,
                               "www-authenticate": 'Bearer error="invalid_token"'}
    assert get_steps[1][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "0",
                               "retry-after": None, "www-authenticate": None}
    assert get_steps[2][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "0",
                               "retry-after": "5", "www-authenticate": None}
    assert seen["POST"] == get_steps


# --- 6. upstream read timeout on the fast path -------------------------------------------


async def test_route_timeout_gives_a_504_envelope_and_the_late_answer_is_dropped(
        gw: GatewayProcess) -> None:
    await warm(gw, "/short/warm")
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        status, headers, doc = await send(s, gw.url + "/short/slow?s=2")
        elapsed = time.monotonic() - t0
        assert status == 504 and doc["code"] == 504 and doc["data"] is None
        assert doc["trace_id"] == headers["X-Trace-ID"]
        assert elapsed < 1.0
        # the timed-out connection is gone: the next answer is this request's own
        for i in range(3):
            status, _, doc = await send(s, f"{gw.url}/short/next{i}")
            assert (status, doc["path"]) == (200, f"/next{i}")


# --- accounting ------------------------------------------------------------------------


async def test_fast_requests_are_logged_and_counted_like_any_other(
        gw: GatewayProcess, svc: ThreadedApp) -> None:
    await warm(gw, "/fp/warm")
    def requests_ok() -> float:
        return metric_value(gw.metrics(), "wxgated_requests_total", route="fp", method="GET",
                            status="200")

    def upstream_ok() -> float:
        return metric_value(gw.metrics(), "wxgated_upstream_requests_total", upstream="svc",
                            target=svc.url, status="200")

    before = (requests_ok(), upstream_ok())
    async with aiohttp.ClientSession() as s:
        for i in range(3):
            status, _, _ = await send(s, gw.url + "/fp/logged", headers={
                "X-Trace-ID": f"fast-log-{i}"})
            assert status == 200
    await asyncio.sleep(0.2)
    lines = [d for d in gw.log_lines() if str(d.get("trace_id")).startswith("fast-log-")]
    assert len(lines) == 3
    for line in lines:
        assert (line["route"], line["method"], line["path"], line["status"]) == (
            "fp", "GET", "/fp/logged", 200)
        assert line["upstream"] == "svc" and line["target"] == svc.url
        assert line["duration_ms"] >= line["upstream_ms"] >= 0
        assert line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert (requests_ok(), upstream_ok()) == (before[0] + 3, before[1] + 3)
    assert metric_value(gw.metrics(), "wxgated_requests_in_flight") == 0


# --- 7. 404 and 405 from the fast dispatcher ---------------------------------------------


async def test_404_and_405_envelopes_match_the_coroutine_path(gw: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as s:
        for method, data in (("GET", None), ("DELETE", None), ("POST", b"{}")):
            status, headers, doc = await send(s, gw.url + "/nowhere", method, data=data)
            assert status == 404 and headers["Content-Type"].startswith("application/json")
            assert doc == {"code": 404, "msg": "not found", "data": None,
                           "trace_id": headers["X-Trace-ID"]}
        for method, data in (("DELETE", None), ("POST", b"{}"), ("PUT", b"{}")):
            status, headers, doc = await send(s, gw.url + "/only-get", method, data=data)
            assert status == 405 and "GET" in headers["Allow"].split(", ")
            assert doc == {"code": 405, "msg": "method not allowed", "data": None,
                           "trace_id": headers["X-Trace-ID"]}
        async with s.head(gw.url + "/nowhere") as r:
            assert r.status == 404 and await r.read() == b""
        status, _, doc = await send(s, gw.url + "/only-get")
        assert status == 200 and doc["path"] == "/only-get"


# --- 8. small bodies: held until whole, then the fast path ------------------------------


def post(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nhost: fast.test\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (path.encode(), len(body)) + body)


async def test_a_body_arriving_after_its_head_is_still_forwarded_whole(
        gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    body = b'{"note": "' + b"x" * 200 + b'"}'
    request = post("/fp/late", body)
    cut = request.index(b"\r\n\r\n") + 4 + 10  # the head and 10 bytes, then a pause
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(request[:cut])
        await asyncio.sleep(0.2)
        writer.write(request[cut:])
        async with asyncio.timeout(5):
            status, _, raw = await read_response(reader)
    finally:
        writer.close()
    doc = json.loads(raw)
    assert (status, doc["method"], doc["path"], doc["len"]) == (200, "POST", "/late", len(body))


async def test_pipelined_posts_and_a_get_are_answered_in_order(gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    requests = post("/fp/p1", b'{"a": 1}') + post("/fp/p2", b'{"b": 22}') + get("/fp/g3")
    answers, _ = await raw_exchange(gw.port, requests, 3)
    docs = [(status, json.loads(body)) for status, _, body in answers]
    assert [(st, d["method"], d["path"], d["len"]) for st, d in docs] == [
        (200, "POST", "/p1", 8), (200, "POST", "/p2", 9), (200, "GET", "/g3", 0)]


async def test_route_max_body_holds_on_the_fast_path_too(gw: GatewayProcess) -> None:
    await warm(gw, "/capped/warm")
    async with aiohttp.ClientSession() as s:
        status, headers, doc = await send(s, gw.url + "/capped/big", "POST", data=b"x" * 101)
        assert status == 413 and doc["code"] == 413 and doc["trace_id"] == headers["X-Trace-ID"]
        status, _, doc = await send(s, gw.url + "/capped/ok", "POST", data=b"x" * 100)
        assert status == 200 and doc["len"] == 100
