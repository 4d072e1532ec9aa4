"""WebSocket proxying through a real `wxgated run` against a real aiohttp upstream."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, served

JWT_SECRET = "websocket-test-secret-0123456789abcdef"
JWT = {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]}
BIG = 5 << 20


def upstream_app() -> web.Application:
    closed: dict[str, int | None] = {}

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, protocols=("chat",))
        await ws.prepare(request)
        if request.query.get("hello"):
            await ws.send_str("hello")
        if request.query.get("headers"):
            await ws.send_json({**{k.lower(): v for k, v in request.headers.items()},
                                "query_string": request.query_string})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"bye")
                    break
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        closed[request.query.get("id", "")] = ws.close_code
        return ws

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"why": "not here"}, status=403)

    async def closed_code(request: web.Request) -> web.Response:
        return web.json_response({"code": closed.get(request.query["id"], -1)})

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/closed", closed_code)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


def config(upstream: ThreadedApp) -> dict[str, Any]:
    return {
        "jwt": JWT,
        "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
        "routes": [
            {"name": "ws", "match": {"path": "/ws/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "svc"},
            {"name": "nows", "match": {"path": "/nows/*rest"},
             "filters": [{"strip_prefix": 1}], "upstream": "svc", "websocket": False},
            {"name": "quiet", "match": {"path": "/quiet/*rest"},
             "filters": [{"strip_prefix": 1}], "upstream": "svc", "websocket_idle": "300ms"},
            {"name": "auth", "match": {"path": "/auth/*rest"},
             "filters": [{"jwt_auth": {"check_session": False, "query_param": "token"}},
                         {"strip_prefix": 1}], "upstream": "svc"},
            {"name": "auth-unprefixed", "match": {"path": "/ws"},  # the path goes up as sent
             "filters": [{"jwt_auth": {"check_session": False, "query_param": "token"}}],
             "upstream": "svc"},
        ],
    }


@pytest.fixture(scope="module")
def gw(upstream: ThreadedApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config(upstream)).start()
    yield proc
    proc.stop()


def ws_url(gw: GatewayProcess, path: str) -> str:
    return gw.url.replace("http://", "ws://") + path


async def closed_code(upstream: ThreadedApp, ident: str) -> int:
    """What close code the upstream saw for connection `ident` (polled: it records the
    code only after its side of the close handshake is over)."""
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(f"{upstream.url}/closed", params={"id": ident}) as r:
                code = (await r.json())["code"]
            if code != -1:
                return int(code)
            await asyncio.sleep(0.02)
    return -1


async def raw_exchange(gw: GatewayProcess, path: str, extra: bytes = b"") -> bytes:
    """Send an upgrade request by hand and read until the gateway closes the connection;
    fails (times out) if the gateway leaves it hanging."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n"
                 b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                 + key + b"\r\n\r\n" + extra)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def masked_text(text: str) -> bytes:
    data = text.encode()
    key = os.urandom(4)
    return bytes((0x81, 0x80 | len(data))) + key + bytes(b ^ key[i % 4]
                                                          for i, b in enumerate(data))


async def test_text_and_binary_echo_with_many_messages_in_order(gw: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(gw, "/ws/ws")) as ws:
        await ws.send_str("héllo")
        assert await ws.receive_str(timeout=5) == "héllo"
        payload = os.urandom(1000)
        await ws.send_bytes(payload)
        assert await ws.receive_bytes(timeout=5) == payload
        for i in range(300):
            await ws.send_str(f"m{i}")
        got = [await ws.receive_str(timeout=5) for _ in range(300)]
        assert got == [f"m{i}" for i in range(300)]


async def test_a_5mib_message_passes_both_ways(gw: GatewayProcess) -> None:
    big = os.urandom(BIG)
    async with aiohttp.ClientSession() as s, \
            s.ws_connect(ws_url(gw, "/ws/ws"), max_msg_size=0) as ws:
        await ws.send_bytes(big)
        await ws.send_str("after")
        assert await ws.receive_bytes(timeout=20) == big
        assert await ws.receive_str(timeout=5) == "after"


async def test_handshake_headers_and_subprotocol(gw: GatewayProcess) -> None:
    url = ws_url(gw, "/ws/ws?headers=1")
    async with aiohttp.ClientSession() as s, s.ws_connect(
            url, protocols=("chat",), headers={"X-Trace-ID": "ws-trace-1",
                                               "X-WX-OpenID": "forged"}) as ws:
        assert ws.protocol == "chat"  # Sec-WebSocket-Protocol came back through the 101
        seen = await ws.receive_json(timeout=5)
    assert seen["upgrade"].lower() == "websocket"
    assert seen["x-trace-id"] == "ws-trace-1"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["sec-websocket-protocol"] == "chat"
    assert "x-wx-openid" not in seen


async def test_bytes_on_either_side_of_the_101_are_not_lost(gw: GatewayProcess) -> None:
    # the upstream speaks first, right after its 101
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(gw, "/ws/ws?hello=1")) as ws:
        assert await ws.receive_str(timeout=5) == "hello"
    # the client sends a frame in the same packet as its request head
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET /ws/ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket"
                 b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
                 + masked_text("early bird"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    frame = await asyncio.wait_for(reader.readexactly(2 + len("early bird")), 5)
    assert frame == b"\x81\x0aearly bird"
    writer.close()


async def test_close_codes_pass_through_both_ways(gw: GatewayProcess,
                                                  upstream: ThreadedApp) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url(gw, "/ws/ws?id=up")) as ws:
            await ws.send_str("close:4001")
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert msg.data == 4001 and msg.extra == "bye"
        async with s.ws_connect(ws_url(gw, "/ws/ws?id=down")) as ws:
            await ws.send_str("ping")
            assert await ws.receive_str(timeout=5) == "ping"
            await ws.close(code=4002, message=b"done")
    assert await closed_code(upstream, "down") == 4002


async def _gauge(gw: GatewayProcess, route: str, want: float) -> float:
    value = -1.0
    for _ in range(100):
        value = metric_value(gw.metrics(), "wxgated_websockets_open", route=route)
        if value == want:
            break
        await asyncio.sleep(0.02)
    return value


async def test_open_gauge_counts_live_websockets(gw: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url(gw, "/ws/ws")) as ws:
            await ws.send_str("x")
            await ws.receive_str(timeout=5)
            assert await _gauge(gw, "ws", 1) == 1
        assert await _gauge(gw, "ws", 0) == 0
    opened = [line for line in gw.log_lines()
              if line.get("status") == 101 and line.get("route") == "ws"]
    assert opened, "the upgrade is in the access log"


async def test_route_with_websocket_false_refuses_and_closes(gw: GatewayProcess) -> None:
    answer = await raw_exchange(gw, "/nows/ws")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in head.lower()
    doc = json.loads(body)
    assert doc["code"] == 400 and doc["msg"] == "websocket not allowed on this route"


async def test_upstream_refusal_is_returned_as_is(gw: GatewayProcess) -> None:
    answer = await raw_exchange(gw, "/ws/refuse")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert json.loads(body) == {"why": "not here"}


async def test_idle_websocket_is_closed_with_1001(gw: GatewayProcess,
                                                  upstream: ThreadedApp) -> None:
    async with aiohttp.ClientSession() as s, \
            s.ws_connect(ws_url(gw, "/quiet/ws?id=idle")) as ws:
        await ws.send_str("one")
        assert await ws.receive_str(timeout=5) == "one"
        start = time.monotonic()
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert time.monotonic() - start >= 0.25
    assert await closed_code(upstream, "idle") == 1001  # the upstream was told as well


async def test_jwt_query_token_guards_the_upgrade(gw: GatewayProcess) -> None:
    from wxgated.wechat.jwt_keys import KeyRing

    token, _ = KeyRing.from_config(JWT).issue({"sub": "openid-ws", "sid": "s1"})
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(ws_url(gw, "/auth/ws"))
        assert err.value.status == 401
        for path in ("/auth/ws", "/ws"):  # a rewritten path, and one forwarded as sent
            async with s.ws_connect(ws_url(gw, f"{path}?headers=1&token={token}")) as ws:
                seen = await ws.receive_json(timeout=5)
            assert seen["x-wx-openid"] == "openid-ws"
            assert seen["query_string"] == "headers=1"  # the token stays at the gateway


async def test_sigterm_closes_websockets_with_1001_and_exits_0(
        upstream: ThreadedApp, tmp_path: Path) -> None:
    proc = GatewayProcess(tmp_path, config(upstream)).start()
    try:
        async with aiohttp.ClientSession() as s, \
                s.ws_connect(ws_url(proc, "/ws/ws?id=term")) as ws:
            await ws.send_str("still here")
            assert await ws.receive_str(timeout=5) == "still here"
            proc.signal(signal.SIGTERM)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert proc.proc is not None
        assert await asyncio.to_thread(proc.proc.wait, 10) == 0
        assert await closed_code(upstream, "term") == 1001
    finally:
        proc.stop()


# -- frame boundaries: where the gateway may put its own close frame ----------------

def frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    n = len(payload)
    size = bytes((n,)) if n < 126 else (b"\x7e" + n.to_bytes(2, "big") if n < 65536
                                        else b"\x7f" + n.to_bytes(8, "big"))
    head = bytes((0x80 | opcode, (0x80 if masked else 0) | size[0])) + size[1:]
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("masked", [False, True])
def test_frame_cursor_finds_every_boundary_whatever_the_chunking(masked: bool) -> None:
    from wxgated.websocket.frames import FrameCursor

    frames = [frame(1, b"hi", masked), frame(2, os.urandom(300), masked),
              frame(2, os.urandom(70000), masked), frame(9, b"", masked),
              frame(8, (1000).to_bytes(2, "big"), masked)]
    stream = b"".join(frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    for step in (1, 3, 7, 1000, len(stream)):
        cursor = FrameCursor()
        for start in range(0, len(stream), step):
            chunk = stream[start:start + step]
            end = cursor.frame_end(chunk)
            want = [e - start for e in sorted(ends) if start < e <= start + len(chunk)]
            if not cursor.at_boundary:
                assert end == (want[0] if want else -1), (step, start)
            cursor.feed(chunk)
            assert cursor.at_boundary == (start + len(chunk) in ends), (step, start)
        assert cursor.closed


def test_gateway_close_frame_waits_for_the_frame_in_flight() -> None:
    from wxgated.websocket.frames import close_frame
    from wxgated.websocket.tunnel import _Pipe

    class Sink:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

    sink = Sink()
    pipe = _Pipe(sink)
    big, after = frame(2, b"x" * 5000, False), frame(1, b"late", False)
    bye = close_frame(1001)
    pipe.relay(big[:100])
    pipe.seal(bye)
    assert sink.data == big[:100]  # not in the middle of a frame
    pipe.relay(big[100:] + after)
    assert sink.data == big + bye  # the frame ends, then our close; nothing after it
    assert close_frame(1001, b"bye")[:4] == b"\x88\x05\x03\xe9"
    masked = close_frame(1001, b"bye", masked=True)
    assert masked[:2] == b"\x88\x85" and len(masked) == 2 + 4 + 5
    assert bytes(b ^ masked[2 + i % 4] for i, b in enumerate(masked[6:])) == b"\x03\xe9bye"
