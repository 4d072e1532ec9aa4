"""How an upstream's answer is framed for the client, whatever shape it arrives in: ended
by the close, cut short, an oversized head, trailers, a broken head."""

from __future__ import annotations

import json

import pytest

from tests.support.edges import Conn, chunked_body, one, req
from tests.support.gateway import GatewayProcess

# --- upstream framing ------------------------------------------------------------------


async def test_close_delimited_answer_is_chunked_to_11_and_closed_to_10(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:  # a streamed answer, then one the gateway makes at once, pipelined
        await c.send(req("GET", "/r/eof", "Host: x") + req("GET", "/nowhere", "Host: x"))
        first = await c.answer()
        second = await c.answer()
    finally:
        c.close()
    assert (first[0], first[1].get("transfer-encoding"), first[2]) == (
        200, "chunked", b"part one, part two")
    assert second[0] == 404 and json.loads(second[2])["code"] == 404
    c = await Conn.open(gw)
    try:
        await c.send(req("GET", "/r/eof", version="1.0"))
        out = await c.rest()
    finally:
        c.close()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert body == b"part one, part two"


async def test_identity_transfer_encoding_answer_is_delimited_by_the_close(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("GET", "/r/identity", "Host: x", "Connection: close"))
        out = await c.rest()
    finally:
        c.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out[:200]
    assert chunked_body(rest) == (b"hello identity", True), out


@pytest.mark.parametrize("cut", ["eofreset", "eofstall"])  # a reset; the read timeout
async def test_close_delimited_answer_cut_short_is_not_made_complete(
        gw: GatewayProcess, cut: str) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("GET", f"/r/{cut}", "Host: x", "Connection: close"))
        out = await c.rest()
    finally:
        c.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    body, ended = chunked_body(rest)
    assert body == b"part one, " and not ended, "a truncated body looks complete"


@pytest.mark.parametrize("drip", ["0", "1"])  # in one read; a field a read
async def test_oversized_upstream_head_is_a_502(gw: GatewayProcess, drip: str) -> None:
    status, _, body = await one(gw, req("GET", f"/r/bighead?kb=60&drip={drip}", "Host: x"))
    assert (status, body) == (200, b"ok")
    status, _, body = await one(gw, req("GET", f"/r/bighead?kb=70&drip={drip}", "Host: x"))
    assert status == 502 and json.loads(body)["code"] == 502


async def test_trailer_fields_do_not_become_header_fields(gw: GatewayProcess) -> None:
    status, headers, body = await one(gw, req("GET", "/r/trailer", "Host: x"))
    assert (status, body) == (200, b"hello")
    assert "x-checksum" not in headers


async def test_upstream_connection_close_answer_is_not_reused(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        seen = []
        for _ in range(3):  # the upstream keeps each socket open a second after its answer
            await c.send(req("GET", "/r/closing", "Host: x"))
            status, _, body = await c.answer(timeout=0.8)
            seen.append((status, int(body)))
    finally:
        c.close()
    assert [s for s, _ in seen] == [200] * 3
    assert len({n for _, n in seen}) == 3, "a connection the upstream closes was reused"


async def test_upstream_closing_mid_head_is_a_502(gw: GatewayProcess) -> None:
    status, _, body = await one(gw, req("GET", "/r/midhead", "Host: x"))
    assert status == 502 and json.loads(body)["code"] == 502


async def test_answer_broken_right_after_its_head_is_a_502_on_both_paths(
        gw: GatewayProcess) -> None:
    """GET (callback path) and POST with a body (coroutine path) alike: the answer broke
    before anything was sent to the client, so the client gets a clean 502."""
    for request in (req("GET", "/r/badchunk", "Host: x"),
                    req("POST", "/r/badchunk", "Host: x", "Content-Length: 2", body=b"hi")):
        status, _, body = await one(gw, request)
        assert status == 502 and json.loads(body)["code"] == 502
