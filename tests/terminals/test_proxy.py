"""Proxy correctness through a real `wxgated run` against a real aiohttp upstream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import get_json, headers_of, raw_request
from tests.support.servers import ThreadedApp, free_port, served


def upstream_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({
            "method": request.method, "path": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "sha256": hashlib.sha256(body).hexdigest(), "len": len(body),
            "chunked": request.headers.get("Transfer-Encoding", ""),
        })

    async def hash_body(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        return web.json_response({"sha256": h.hexdigest(), "len": n})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"ETag": '"v1"'})

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["mb"]) << 20
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(size >> 20):
            await resp.write(block)
        return resp

    async def die(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def die_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"y" * 1000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "2")))
        return web.json_response({"slept": True})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="hello world")

    app = web.Application(client_max_size=0)
    app.router.add_get("/text", text)
    app.router.add_post("/hash", hash_body)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/download", download)
    app.router.add_get("/die", die)
    app.router.add_get("/die-chunked", die_chunked)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture(scope="module")
def gw(upstream: ThreadedApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    dead = free_port()
    config = {
        "server": {"limits": {"max_body": "200MiB"}, "trusted_proxies": ["127.0.0.0/8"]},
        "upstreams": {
            "svc": {"targets": [{"url": upstream.url}], "timeouts": {"read": "500ms"}},
            "dead": {"targets": [{"url": f"http://127.0.0.1:{dead}"}]},
        },
        "routes": [
            {"name": "api", "match": {"path": "/api/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "svc"},
            {"name": "keep-host", "match": {"path": "/kh/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "svc", "preserve_host": True},
            {"name": "dead", "match": {"path": "/dead"}, "upstream": "dead"},
            {"name": "small", "match": {"path": "/small/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "svc", "timeout": "200ms", "max_body": "16B"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield proc
    proc.stop()


async def test_hop_by_hop_headers_are_not_forwarded(gw: GatewayProcess) -> None:
    status, _, doc = await get_json(gw.url + "/api/echo", headers={
        "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-Kept": "yes"})
    assert status == 200
    h = headers_of(doc)
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in h, name
    assert h["x-kept"] == ["yes"]
    assert h["via"] == ["1.1 wxgated"]


async def test_forwarded_headers_and_upstream_host(gw: GatewayProcess, upstream: ThreadedApp) -> None:
    _, _, doc = await get_json(gw.url + "/api/echo?a=1", headers={"X-Forwarded-For": "203.0.113.9"})
    h = headers_of(doc)
    assert doc["path"] == "/echo?a=1"
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]  # appended, not replaced
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]
    assert h["host"] == [f"127.0.0.1:{upstream.port}"]  # the upstream's host, by default
    assert h["x-real-ip"] == ["203.0.113.9"]  # loopback is a trusted proxy in this config


async def test_preserve_host_keeps_the_client_host(gw: GatewayProcess) -> None:
    _, _, doc = await get_json(gw.url + "/kh/echo", headers={"Host": "mini.example.com"})
    assert headers_of(doc)["host"] == ["mini.example.com"]


async def test_client_identity_headers_never_reach_the_upstream(gw: GatewayProcess) -> None:
    _, _, doc = await get_json(gw.url + "/api/echo", headers={
        "X-WX-OpenID": "forged", "x-wx-unionid": "forged", "X-Wx-Anything": "forged"})
    assert not [k for k in headers_of(doc) if k.startswith("x-wx-")]


async def test_trace_id_taken_from_request_and_propagated(gw: GatewayProcess) -> None:
    _, headers, doc = await get_json(gw.url + "/api/echo", headers={"X-Trace-ID": "abc-123"})
    h = headers_of(doc)
    assert headers["X-Trace-ID"] == "abc-123"
    assert h["x-trace-id"] == ["abc-123"]
    assert len(h["traceparent"][0].split("-")[1]) == 32
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    _, headers, doc = await get_json(gw.url + "/api/echo", headers={"traceparent": tp})
    assert headers["X-Trace-ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert headers_of(doc)["traceparent"][0].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


@pytest.mark.parametrize("blocks", [50, 200])  # 25 kB: read ahead whole; 100 kB: streamed
async def test_chunked_request_body_is_forwarded(gw: GatewayProcess, blocks: int) -> None:
    async def gen():  # aiohttp sends an async generator with chunked encoding
        for i in range(blocks):
            yield b"%05d" % i * 100

    _, _, doc = await get_json(gw.url + "/api/upload", method="POST", data=gen())
    expected = b"".join(b"%05d" % i * 100 for i in range(blocks))
    assert doc["len"] == len(expected)
    assert doc["sha256"] == hashlib.sha256(expected).hexdigest()
    # a body within server.limits.request_buffer (64KiB) is read whole before it goes
    # upstream, so it goes with a Content-Length, as nginx sends it; a larger one streams
    assert doc["chunked"] == ("chunked" if len(expected) > 64 * 1024 else "")


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def test_100mib_bodies_stream_both_ways_in_bounded_memory(gw: GatewayProcess) -> None:
    size = 100 << 20
    block = os.urandom(1 << 20)

    async def gen():
        for _ in range(size >> 20):
            yield block

    want = hashlib.sha256(block * (size >> 20)).hexdigest()
    status, _, doc = await get_json(gw.url + "/api/hash", method="POST", data=gen(),
                                    headers={"Content-Length": str(size)})
    assert status == 200 and doc == {"sha256": want, "len": size}
    h = hashlib.sha256()
    n = 0
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/api/download?mb=100") as r:
        async for chunk in r.content.iter_chunked(1 << 16):
            h.update(chunk)
            n += len(chunk)
    assert n == size
    assert h.hexdigest() == hashlib.sha256((bytes(range(256)) * 4096) * 100).hexdigest()
    assert gw.proc is not None
    assert _vm_hwm_kib(gw.proc.pid) < 120 * 1024, "the gateway buffered a body"


def test_head_answers_have_no_body(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"HEAD /api/text HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /api/text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"content-length: 11" in first.lower()
    assert rest.startswith(b"HTTP/1.1 200"), "HEAD leaked a body into the next answer"
    assert rest.endswith(b"hello world")


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(gw: GatewayProcess, code: int) -> None:
    out = raw_request(gw.port, f"GET /api/status/{code} HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /api/text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      .encode())
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(f"HTTP/1.1 {code}".encode())
    assert b"etag" in first.lower()
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"hello world")


@pytest.mark.parametrize("path", ["/api/die", "/api/die-chunked"])
async def test_upstream_dying_mid_body_aborts_the_client_response(gw: GatewayProcess,
                                                                   path: str) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(gw.url + path) as r:
                assert r.status == 200
                await r.read()


async def test_refused_upstream_is_502_envelope(gw: GatewayProcess) -> None:
    status, headers, doc = await get_json(gw.url + "/dead")
    assert status == 502
    assert doc["code"] == 502 and doc["data"] is None
    assert doc["trace_id"] == headers["X-Trace-ID"]


async def test_read_timeout_is_504_envelope(gw: GatewayProcess) -> None:
    status, _, doc = await get_json(gw.url + "/api/slow?s=2")
    assert status == 504 and doc["code"] == 504
    # the gateway is still fine afterwards
    status, _, _ = await get_json(gw.url + "/api/echo")
    assert status == 200


def test_access_log_has_one_json_line_per_request(gw: GatewayProcess) -> None:
    raw_request(gw.port, b"GET /api/text?q=1 HTTP/1.1\r\nHost: x\r\nX-Trace-ID: log-me-1\r\n"
                         b"Connection: close\r\n\r\n")
    time.sleep(0.2)
    lines = [d for d in gw.log_lines() if d.get("trace_id") == "log-me-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["route"] == "api" and line["method"] == "GET" and line["path"] == "/api/text"
    assert line["status"] == 200 and line["upstream"] == "svc"
    assert line["target"].startswith("http://127.0.0.1:")
    assert line["duration_ms"] >= line["upstream_ms"] >= 0
    assert line["bytes_in"] > 0 and line["bytes_out"] > 0 and line["client_ip"] == "127.0.0.1"
    assert json.loads(json.dumps(line))["ts"].endswith("Z")


async def test_route_timeout_and_max_body_override_the_defaults(gw: GatewayProcess) -> None:
    status, _, doc = await get_json(gw.url + "/small/slow?s=0.4")  # svc allows 500ms
    assert status == 504 and doc["code"] == 504
    status, _, _ = await get_json(gw.url + "/small/echo", method="POST", data=b"x" * 16)
    assert status == 200
    status, _, doc = await get_json(gw.url + "/small/echo", method="POST", data=b"x" * 17)
    assert status == 413 and doc["code"] == 413

    async def gen():
        for _ in range(4):
            yield b"x" * 8

    status, _, doc = await get_json(gw.url + "/small/echo", method="POST", data=gen())
    assert status == 413  # counted on the stream, not trusted from a header
