"""The client address: only plain IP literals from trusted X-Forwarded-For hops, every
X-Forwarded-For line read as one list, the peer address whenever anything is off."""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp
from wxgated.http.clientip import ClientIPResolver, ip_literal

XFF = b"x-forwarded-for"
PEER = "10.0.0.2"  # a trusted proxy in front of us
R = ClientIPResolver(["10.0.0.0/8", "fe80::/10"])


def resolve(*lines: str, peer: str = PEER) -> str:
    headers = [(XFF, v.encode("latin-1")) for v in lines]
    return R.resolve(peer, headers[-1][1] if headers else None, headers)


@pytest.mark.parametrize("text, want", [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:DB8:0:0::1", "2001:db8::1"),  # canonical: one client, one rate-limit key
    ("::ffff:198.51.100.1", str(ipaddress.ip_address("::ffff:198.51.100.1"))),
    ("fe80::1%eth0", None),  # a zone id is free text
    ("fe80::1%25eth0", None),
    ("[::1]", None),
    ("203.0.113.9:443", None),
    ("01.2.3.4", None),
    ("1.2.3", None),
    ("unknown", None),
    ("_hidden", None),
    ("1.2.3.4\x0b", None),
    ("\u0661.\u0662.\u0663.\u0664", None),  # Arabic-Indic digits: isdigit() says yes
    ("1.2.3.4 ", None),
    ("", None),
])
def test_ip_literal(text: str, want: str | None) -> None:
    assert ip_literal(text) == want


@pytest.mark.parametrize("lines, want", [
    (["203.0.113.9"], "203.0.113.9"),
    (["203.0.113.9 ,\t10.0.0.5"], "203.0.113.9"),  # OWS around hops
    (["fe80::1%eth0"], PEER),
    (["203.0.113.9, fe80::1%eth0"], PEER),  # a zone id where the client should be
    (["fe80::1%eth0, 203.0.113.9"], "203.0.113.9"),  # left of the client: never read
    (["unknown"], PEER),
    (["198.51.100.1, unknown, 10.0.0.3"], PEER),  # a trusted proxy wrote junk: stop
    (["junk, 198.51.100.1, 10.0.0.3"], "198.51.100.1"),
    (["10.0.0.4, 10.0.0.3"], "10.0.0.4"),  # every hop trusted: the leftmost
    (["fe80::5, 10.0.0.3"], "fe80::5"),
    ([""], PEER),
    ([" , ,"], PEER),
    (["2001:DB8::1"], "2001:db8::1"),
    # RFC 9110 §5.3: several lines are one list, in order
    (["198.51.100.7", "10.0.0.9"], "198.51.100.7"),
    (["198.51.100.7, 10.0.0.8", "10.0.0.9"], "198.51.100.7"),
    (["198.51.100.7", "garbage, 10.0.0.9"], PEER),
])
def test_resolve(lines: list[str], want: str) -> None:
    assert resolve(*lines) == want


def test_untrusted_peers_and_no_trusted_proxies_ignore_the_header() -> None:
    assert resolve("203.0.113.9", peer="198.51.100.1") == "198.51.100.1"
    assert ClientIPResolver([]).resolve(PEER, b"203.0.113.9") == PEER
    assert R.resolve(PEER, None) == PEER
    assert R.resolve("fe80::9%eth0", b"203.0.113.9") == "203.0.113.9"  # the kernel's zone


def test_hostile_hops_do_not_grow_the_cache() -> None:
    r = ClientIPResolver(["10.0.0.0/8"])
    for i in range(20_000):
        r.resolve(PEER, f"junk-{i}".encode())
    assert len(r._cache) <= 4096


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(st.characters(max_codepoint=0xFF), max_size=45), min_size=1, max_size=3))
def test_drawn_headers_give_a_literal_or_the_peer(lines: list[str]) -> None:
    got = resolve(*lines)
    assert got == PEER or ip_literal(got) == got


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.sampled_from(["%eth0", "%1", "%", "%25x", "]:80", " x", "/24"]))
def test_drawn_addresses_with_a_suffix_are_refused(addr: Any, suffix: str) -> None:
    text = str(addr) + suffix
    assert ip_literal(text) is None
    assert resolve(text) == PEER
    assert resolve(str(addr)) == str(addr)  # trusted or not: the only hop is the client


# -- through a real gateway: X-Real-IP upstream and client_ip in the access log -------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"headers": [[k.lower(), v] for k, v in request.headers.items()]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = ThreadedApp(app)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(upstream: ThreadedApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "server": {"trusted_proxies": ["127.0.0.0/8"]},
        "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
        "routes": [{"name": "api", "match": {"path": "/api/*rest"}, "upstream": "svc"}],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield proc
    proc.stop()


def call(gw: GatewayProcess, path: str, xff: list[str]) -> dict[str, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.putrequest("GET", path)
        for v in xff:
            conn.putheader("X-Forwarded-For", v)
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 200
        out: dict[str, list[str]] = {}
        for k, v in json.loads(r.read())["headers"]:
            out.setdefault(k, []).append(v)
        return out
    finally:
        conn.close()


def logged_ip(gw: GatewayProcess, path: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gw.log_lines():
            if line.get("path") == path:
                return str(line["client_ip"])
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {path}")


@pytest.mark.parametrize("n, xff, want", [
    (1, ["fe80::1%eth0"], "127.0.0.1"),
    (2, ["203.0.113.9, fe80::1%eth0"], "127.0.0.1"),
    (3, ["not-an-ip"], "127.0.0.1"),
    (4, ['1.2.3.4", "evil": "x'], "127.0.0.1"),
    (5, ["2001:DB8::7"], "2001:db8::7"),
    (6, ["198.51.100.7", "127.0.0.5"], "198.51.100.7"),  # two lines, one list
])
def test_gateway_real_ip_and_log(gw: GatewayProcess, n: int, xff: list[str], want: str) -> None:
    path = f"/api/ip{n}"
    h = call(gw, path, xff)
    assert h["x-real-ip"] == [want]
    assert h["x-forwarded-for"] == [", ".join([*xff, "127.0.0.1"])]  # passed on as received
    assert logged_ip(gw, path) == want
