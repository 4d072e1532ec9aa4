"""Request targets and Host: the absolute form, duplicate or missing Host, unparsable
targets, limits on the request line and header lines, HEAD on the gateway's own answers."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.edges import HEADER_TIMEOUT, Conn, one, req
from tests.support.gateway import GatewayProcess
from wxgated.http.framing import origin_form


def test_absolute_form_keeps_an_ipv6_authority_whole() -> None:
    assert origin_form(b"http://[::1]:8080/x?y=1") == (b"/x?y=1", b"[::1]:8080")
    assert origin_form(b"http://a.test/x") == (b"/x", b"a.test")


# --- request targets and Host ----------------------------------------------------------


async def test_absolute_form_target_routes_by_its_authority(gw: GatewayProcess) -> None:
    status, _, body = await one(gw, req("GET", "http://a.test/who", "Host: b.test"))
    assert (status, json.loads(body)) == (200, "a")


async def test_two_host_headers_are_refused(gw: GatewayProcess) -> None:
    # today: routed as a.test (the last Host) to a route only a.test may use, and
    # forwarded with `host: b.test` (the first), preserve_host being on
    status, _, body = await one(gw, req("GET", "/kh/echo", "Host: b.test", "Host: a.test"))
    assert status == 400, json.loads(body)["head"]


async def test_http11_request_without_host_is_refused(gw: GatewayProcess) -> None:
    status, _, _ = await one(gw, req("GET", "/fixed"))
    assert status == 400


@pytest.mark.parametrize("line", ["GET http://[::1/r/echo", "GET http://a.test:99999/r/echo",
                                  "CONNECT a.test:443"])
async def test_unparsable_request_target_is_refused(gw: GatewayProcess, line: str) -> None:
    method, target = line.split(" ")
    status, _, _ = await one(gw, req(method, target, "Host: a.test"))
    assert status in (400, 405, 501)


async def test_too_long_url_is_414(gw: GatewayProcess) -> None:
    status, _, _ = await one(gw, req("GET", "/r/" + "a" * 3000, "Host: x"))
    assert status == 414


async def test_unfinished_header_line_is_limited_too(gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    t0 = time.monotonic()
    try:
        await c.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
        status, _, _ = await c.answer()
    finally:
        c.close()
    assert status == 431 and time.monotonic() - t0 < HEADER_TIMEOUT


async def test_head_on_gateway_answers_has_the_get_length_and_no_body(
        gw: GatewayProcess) -> None:
    c = await Conn.open(gw)
    try:
        await c.send(req("HEAD", "/fixed", "Host: x") + req("HEAD", "/nowhere", "Host: x")
                     + req("GET", "/fixed", "Host: x", "Connection: close"))
        out = await c.rest()
    finally:
        c.close()
    parts = out.split(b"\r\n\r\n")
    assert parts[0].startswith(b"HTTP/1.1 200") and b"content-length: 12" in parts[0]
    assert parts[1].startswith(b"HTTP/1.1 404")
    assert parts[2].startswith(b"HTTP/1.1 200") and parts[3] == b"twelve bytes"
