"""How a client's request body is framed upstream: empty bodies, chunked bodies and their
trailers, early upstream refusals, `Expect: 100-continue`."""

from __future__ import annotations

import asyncio
import json
import time

import jwt

from tests.support.edges import JWT_SECRET, Conn, one, req
from tests.support.gateway import GatewayProcess

# --- request framing ----------------------------------------------------------------------


async def test_empty_post_keeps_its_content_length(gw: GatewayProcess) -> None:
    status, _, body = await one(gw, req("POST", "/r/echo", "Host: x", "Content-Length: 0"))
    assert status == 200
    assert "content-length: 0" in json.loads(body)["head"]


async def test_empty_chunked_body_is_forwarded_and_the_connection_kept(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/r/echo", "Host: x", "Transfer-Encoding: chunked",
                         body=b"0\r\n\r\n") + req("GET", "/r/echo?second", "Host: x"))
        first = await c.answer()
        second = await c.answer()
    finally:
        c.close()
    assert first[0] == 200 and json.loads(first[2])["len"] == 0
    assert second[0] == 200 and json.loads(second[2])["head"][0].startswith("get /echo?second")


async def test_request_trailers_cannot_forge_identity_headers(gw: GatewayProcess) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "o-alice", "iss": "wxgated", "iat": now, "exp": now + 600},
                       JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    status, _, body = await one(gw, req(
        "POST", "/auth/echo", "Host: x", f"Authorization: Bearer {token}",
        "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-WX-OpenID: o-bob\r\n\r\n"))
    assert status == 200
    head = json.loads(body)["head"]
    assert [h for h in head if h.startswith("x-wx-openid:")] == ["x-wx-openid: o-alice"], head


async def test_early_upstream_refusal_reaches_the_uploading_client(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    size = 8 << 20
    try:
        await c.send(req("POST", "/r/early", "Host: x", f"Content-Length: {size}"))
        sender = asyncio.ensure_future(c.send(b"x" * size))
        status, headers, body = await c.answer()
        sender.cancel()
    finally:
        c.close()
    assert (status, body) == (413, b"too big!")
    assert headers.get("connection") == "close"


async def test_expect_continue_refused_by_size_gets_no_100_and_the_connection_closes(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/small/echo", "Host: x", "Content-Length: 100",
                         "Expect: 100-continue"))
        status, headers, _ = await c.answer()
        rest = await c.rest()
    finally:
        c.close()
    assert status == 413 and headers.get("connection") == "close" and rest == b""


async def test_expect_continue_is_ignored_for_http10(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/r/echo", "Content-Length: 5", "Expect: 100-continue",
                         version="1.0"))
        await asyncio.sleep(0.2)
        await c.send(b"hello")
        out = await c.rest()
    finally:
        c.close()
    assert out.startswith(b"HTTP/1.1 200"), out[:60]
