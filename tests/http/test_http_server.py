"""The public HTTP/1.1 server on raw sockets: framing, keep-alive, limits, smuggling."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import raw_request
from tests.support.servers import ThreadedApp


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"path": request.path_qs, "len": len(body),
                                  "body": body.decode(errors="replace")[:200]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    up = ThreadedApp(echo_app())
    config = {
        "server": {"limits": {"max_body": "1KiB", "max_header": "2KiB"},
                   "timeouts": {"header": "1s", "idle": "2s"}},
        "upstreams": {"echo": {"targets": [{"url": up.url}]}},
        "routes": [
            {"name": "ping", "match": {"path": "/ping", "methods": ["GET"]},
             "respond": {"json": {"message": "pong"}}},
            {"name": "echo", "match": {"path": "/echo/*rest"}, "upstream": "echo"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield proc
    proc.stop()
    up.stop()


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream of Content-Length framed responses into (status, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def test_pipelined_requests_are_answered_in_order(gw: GatewayProcess) -> None:
    reqs = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    reqs += b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = responses(raw_request(gw.port, reqs))
    assert [s for s, _ in got] == [200] * 11
    assert [json.loads(b)["path"] for _, b in got[:10]] == [f"/echo/{i}" for i in range(10)]
    assert json.loads(got[10][1]) == {"message": "pong"}


def test_keep_alive_by_default_and_close_on_request(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=3) as s:
        for _ in range(3):
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(65536)
        assert b"connection: close" in data.lower()
        assert s.recv(65536) == b""  # closed by the server


def test_http10_closes_unless_keep_alive_asked(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"GET /ping HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"connection: close" in out.lower()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=3) as s:
        s.sendall(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"connection: keep-alive" in s.recv(65536).lower()
        s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")


def test_expect_100_continue(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=3) as s:
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["body"] == "hello"


def test_chunked_response_framing_for_streamed_answers(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["body"] == "hello world"


@pytest.mark.parametrize("name,data", [
    ("CL and TE", b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("duplicate CL", b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Content-Length: 5\r\n\r\nhello"),
    ("conflicting CL", b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       b"Content-Length: 6\r\n\r\nhello!"),
    ("obs-fold", b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n"),
    ("invalid header name", b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n"),
    ("space before colon", b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
    ("bad TE", b"POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
])
def test_smuggling_shapes_are_rejected_with_400_and_close(gw: GatewayProcess, name: str,
                                                         data: bytes) -> None:
    out = raw_request(gw.port, data + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), name
    assert out.count(b"HTTP/1.1") == 1, "the connection must not go on after a 400"
    assert json.loads(out.partition(b"\r\n\r\n")[2])["code"] == 400


def test_bytes_after_a_closing_request_do_not_cost_its_answer(gw: GatewayProcess) -> None:
    """llhttp refuses data after `Connection: close`; the request before it was fine and
    is answered, the rest is dropped with the connection."""
    for first in (b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  b"POST /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: 2\r\n\r\nhi"):
        out = raw_request(gw.port, first + b"GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n")
        got = responses(out)
        assert [s for s, _ in got] == [200], out[:300]
        assert json.loads(got[0][1])["path"] == "/echo/x"


def test_bad_request_behind_good_ones_is_answered_after_them(gw: GatewayProcess) -> None:
    good = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(2))
    out = raw_request(gw.port, good + b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n")
    got = responses(out)
    assert [s for s, _ in got] == [200, 200, 400]
    assert [json.loads(b)["path"] for _, b in got[:2]] == ["/echo/0", "/echo/1"]


def test_header_too_large_is_431(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")


def test_body_too_large_by_content_length_is_413(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                      + b"a" * 5000)
    assert out.startswith(b"HTTP/1.1 413")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["code"] == 413


def test_chunked_body_too_large_is_413_counted_on_the_stream(gw: GatewayProcess) -> None:
    chunks = b"".join(b"100\r\n" + b"a" * 256 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    out = raw_request(gw.port, b"POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n" + chunks)
    assert out.startswith(b"HTTP/1.1 413")


def test_404_and_405_use_the_envelope(gw: GatewayProcess) -> None:
    got = responses(raw_request(gw.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                                         b"DELETE /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    (s404, b404), (s405, b405) = got
    assert s404 == 404 and json.loads(b404)["msg"] == "not found"
    assert s405 == 405 and json.loads(b405)["code"] == 405
    out = raw_request(gw.port, b"DELETE /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"allow: GET, HEAD" in out.lower().replace(b"allow: get, head", b"allow: GET, HEAD")


def test_slow_header_times_out(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        data = s.recv(65536)
        assert time.monotonic() - start < 3
    assert data.startswith(b"HTTP/1.1 408")


def test_idle_keep_alive_connection_is_closed(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=6) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert s.recv(65536) == b""
        assert 1.5 < time.monotonic() - start < 5


def test_header_trickled_byte_by_byte_still_times_out(gw: GatewayProcess) -> None:
    """A slowloris client can't keep a connection by sending a byte now and then."""
    head = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        start = time.monotonic()
        got = b""
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            s.settimeout(0.2)
            try:
                got = s.recv(65536)
            except TimeoutError:
                continue
            break
        assert got.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - start < 3
