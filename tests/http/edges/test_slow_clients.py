"""Slow or vanishing clients are not upstream timeouts: slow readers, pauses and stalls in
an upload, a client leaving mid-upload or mid-download."""

from __future__ import annotations

import asyncio
import json

from tests.support.edges import BLOCK, DOWNLOAD, HEADER_TIMEOUT, READ_TIMEOUT, Conn, one, req
from tests.support.gateway import GatewayProcess

# --- timing: slow clients are not upstream timeouts ------------------------------------


async def test_slow_reading_client_gets_the_whole_download(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("GET", "/r/download", "Host: x"))
        head = await c.head()
        assert head.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(READ_TIMEOUT * 3)  # a reader slower than the upstream
        got = 0
        async with asyncio.timeout(10):
            while chunk := await c.reader.read(1 << 20):
                got += len(chunk)
                if got >= len(BLOCK) * DOWNLOAD:
                    break
    finally:
        c.close()
    assert got == len(BLOCK) * DOWNLOAD


async def test_pause_in_a_client_upload_is_not_an_upstream_timeout(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/r/echo", "Host: x", "Content-Length: 10", body=b"12345"))
        await asyncio.sleep(READ_TIMEOUT * 2)  # well within any client timeout
        await c.send(b"67890")
        status, _, body = await c.answer()
    finally:
        c.close()
    assert status == 200 and json.loads(body)["len"] == 10


async def test_client_stalling_mid_body_gets_an_answer(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/r/echo", "Host: x", "Content-Length: 10", body=b"12345"))
        try:
            status, _, _ = await c.answer(timeout=HEADER_TIMEOUT + READ_TIMEOUT + 1)
        except TimeoutError:
            status = 0
    finally:
        c.close()
    assert status in (408, 504), "no answer: the request hangs as long as the client does"


async def test_malformed_chunked_body_is_refused(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("POST", "/r/echo", "Host: x", "Transfer-Encoding: chunked",
                         body=b"5\r\nhello\r\nzz\r\n"))
        try:
            status, _, _ = await c.answer(timeout=2.0)
        except TimeoutError:
            status = 0
    finally:
        c.close()
    assert status == 400


async def test_client_leaving_mid_upload_is_not_a_500(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    await c.send(req("POST", "/r/echo", "Host: x", "X-Trace-ID: edge-abort-1",
                     "Content-Length: 100000", body=b"x" * 1000))
    await asyncio.sleep(0.1)
    c.close()
    await asyncio.sleep(0.3)
    lines = [d for d in gw.log_lines() if d.get("trace_id") == "edge-abort-1"]
    assert len(lines) == 1 and lines[0]["status"] != 500, lines


# --- the client goes away -------------------------------------------------------------


async def test_client_leaving_mid_download_does_not_spoil_the_pool(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    await c.send(req("GET", "/r/download", "Host: x"))
    await c.head()
    await c.reader.read(65536)
    c.close()
    await asyncio.sleep(0.1)
    for i in range(3):
        status, _, body = await one(gw, req("GET", f"/r/echo?after={i}", "Host: x"))
        assert status == 200 and json.loads(body)["head"][0] == f"get /echo?after={i} http/1.1"
