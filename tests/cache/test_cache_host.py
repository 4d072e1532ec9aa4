"""The cache key carries the host: a real `wxgated run` in front of a real upstream whose
answer reflects X-Forwarded-Host, so a shared entry would be cache poisoning."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.servers import ThreadedApp, served

CALLS: Counter[str] = Counter()


def upstream_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        host = request.headers.get("X-Forwarded-Host", "")
        CALLS[host] += 1
        return web.json_response(
            {"link": f"https://{host}/next", "proto": request.headers.get("X-Forwarded-Proto")},
            headers={"Cache-Control": "public, max-age=60"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture
def gw(gateway: Any, upstream: ThreadedApp) -> Any:
    CALLS.clear()
    return gateway({
        "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
        "routes": [{"name": "pages", "match": {"path": "/pages/*rest"}, "upstream": "svc",
                    "filters": [{"cache": {"ttl": "60s"}}]}],
    })


def get(gw: Any, host: str, path: str = "/pages/home") -> tuple[str, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200, body
        return resp.getheader("X-Cache-Status", ""), body
    finally:
        conn.close()


def test_a_host_never_gets_another_hosts_entry(gw: Any) -> None:
    status, body = get(gw, "evil.example")
    assert (status, body["link"]) == ("MISS", "https://evil.example/next")
    status, body = get(gw, "api.example.com")
    assert (status, body["link"]) == ("MISS", "https://api.example.com/next")
    status, body = get(gw, "evil.example")
    assert (status, body["link"]) == ("HIT", "https://evil.example/next")
    assert CALLS == {"evil.example": 1, "api.example.com": 1}


def test_the_same_host_hits_however_it_is_spelled(gw: Any) -> None:
    assert get(gw, "api.example.com")[0] == "MISS"
    for spelling in ("api.example.com", "API.Example.COM", "api.example.com:80"):
        status, body = get(gw, spelling)
        assert (status, body["link"]) == ("HIT", "https://api.example.com/next"), spelling
    assert CALLS == {"api.example.com": 1}
    status, _ = get(gw, "api.example.com:8080")  # another port is another origin
    assert status == "MISS"


def test_scheme_and_host_split_the_key() -> None:
    from wxgated.cache.policy import KeySpec, cache_key
    from wxgated.http.message import NO_BODY, Request

    def key(scheme: str, host: str) -> str | None:
        req = Request("GET", "/p", "", [(b"host", host.encode())], NO_BODY, scheme=scheme)
        req.host = host
        return cache_key(req, KeySpec("r"))

    assert key("http", "a.example") != key("https", "a.example")
    assert key("https", "a.example") == key("https", "A.example:443")
    assert key("https", "a.example:80") != key("https", "a.example")
    assert key("http", "a.example") != key("http", "b.example")
