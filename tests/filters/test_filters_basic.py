"""strip_prefix, rewrite, request_headers, response_headers and respond, end to end."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import get_json, headers_of, raw_request
from tests.support.servers import ThreadedApp


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path_qs,
                                  "headers": [[k, v] for k, v in request.headers.items()]},
                                 headers={"X-Upstream": "yes", "Server": "secret/1.0"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def early_hints_upstream() -> tuple[int, threading.Event]:
    """A raw upstream that answers 103 Early Hints before its 200."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                             b"hints")
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], stop


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    up = ThreadedApp(echo_app())
    hints_port, stop = early_hints_upstream()
    config: dict[str, Any] = {
        "upstreams": {"echo": {"targets": [{"url": up.url}]},
                      "hints": {"targets": [{"url": f"http://127.0.0.1:{hints_port}"}]}},
        "routes": [
            {"name": "strip", "match": {"path": "/api/v1/users/:id"},
             "filters": [{"strip_prefix": 2}], "upstream": "echo"},
            {"name": "rewrite", "match": {"path": "/old/:id/*rest"},
             "filters": [{"rewrite": {"regex": "^/old/([0-9]+)/(.*)$",
                                      "to": "/new/{param.id}/\\2"}}],
             "upstream": "echo"},
            {"name": "headers", "match": {"path": "/h"},
             "filters": [{"request_headers": {"set": {"X-Gateway": "wxgated"},
                                              "add": {"X-Extra": "1"},
                                              "remove": ["X-Drop-Me"]}},
                         {"response_headers": {"set": {"Cache-Control": "no-store"},
                                               "remove": ["Server"]}}],
             "upstream": "echo"},
            {"name": "framing", "match": {"path": "/framing"},
             "filters": [{"response_headers": {"set": {"Content-Length": "1",
                                                       "Transfer-Encoding": "chunked",
                                                       "Connection": "close"}}}],
             "upstream": "echo"},
            {"name": "teapot", "match": {"path": "/teapot", "methods": ["GET"]},
             "respond": {"status": 418, "body": "short and stout",
                         "headers": {"X-Kettle": "on"}}},
            {"name": "hints", "match": {"path": "/hints"}, "upstream": "hints"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield proc
    proc.stop()
    up.stop()
    stop.set()


async def test_strip_prefix_drops_leading_segments(gw: GatewayProcess) -> None:
    _, _, doc = await get_json(gw.url + "/api/v1/users/42?x=1")
    assert doc["path"] == "/users/42?x=1"


async def test_rewrite_uses_groups_and_params(gw: GatewayProcess) -> None:
    _, _, doc = await get_json(gw.url + "/old/7/a/b?q=2")
    assert doc["path"] == "/new/7/a/b?q=2"


async def test_request_and_response_headers(gw: GatewayProcess) -> None:
    status, headers, doc = await get_json(gw.url + "/h", headers={
        "X-Gateway": "forged", "X-Drop-Me": "1", "X-Extra": "0"})
    assert status == 200
    h = headers_of(doc)
    assert h["x-gateway"] == ["wxgated"]
    assert h["x-extra"] == ["0", "1"]
    assert "x-drop-me" not in h
    assert headers["Cache-Control"] == "no-store" and "Server" not in headers
    assert headers["X-Upstream"] == "yes"


def test_response_headers_cannot_set_the_framing(gw: GatewayProcess) -> None:
    """Framing is the writer's: a configured Content-Length, Transfer-Encoding or
    Connection never reaches the client, so the answer is read as exactly one message."""
    out = raw_request(gw.port, b"GET /framing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    fields = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]]
    assert fields.count(b"content-length") == 1 and b"transfer-encoding" not in fields
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    assert length == len(body) > 1 and json.loads(body)["path"] == "/framing"


def test_respond_terminal(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"GET /teapot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 418") and b"x-kettle: on" in head.lower()
    assert body == b"short and stout"


def test_interim_1xx_answers_from_the_upstream_are_skipped(gw: GatewayProcess) -> None:
    out = raw_request(gw.port, b"GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hints")
    assert out.count(b"HTTP/1.1") == 1


def test_identity_headers_cannot_be_set_by_request_headers(tmp_path: Any) -> None:
    import subprocess
    import sys

    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "routes": [
        {"name": "x", "match": {"path": "/x"},
         "filters": [{"request_headers": {"set": {"X-WX-OpenID": "admin"}}}],
         "respond": {"json": {}}}]}, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "X-WX-* headers are set by the gateway only" in out.stderr
