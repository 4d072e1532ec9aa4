"""Black-box: aggregation, cache and envelope through a real `wxgated run` (issue 6).

What tests/e2e/test_aggregate_gateway.py leaves to unit tests, seen from outside: three slow
backends fetched in parallel, the statuses when a required backend fails, a partial
answer from a timed-out optional backend, the cache's answer to the upstream's
`Cache-Control` (directives, not strings), Authorization, coalescing on a proxied
route, and `envelope` on errors and non-JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.cache_harness import STATE, upstream_app
from tests.support.e2e_backend import send
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp, free_port

SLOW = 0.3


class Services:
    """The backends' side: how many requests each path got, and the peak in flight."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.inflight = 0
        self.peak = 0

    def app(self) -> web.Application:
        async def slow(request: web.Request) -> web.Response:
            self.calls[request.path] += 1
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            try:
                await asyncio.sleep(float(request.query.get("s", SLOW)))
            finally:
                self.inflight -= 1
            return web.json_response({"name": request.match_info["name"]})

        async def user(request: web.Request) -> web.Response:
            self.calls[request.path] += 1
            return web.json_response({"nickname": "ming", "level": 3})

        async def fail(request: web.Request) -> web.Response:
            self.calls[request.path] += 1
            await asyncio.sleep(float(request.query.get("s", "0")))
            return web.json_response({"msg": "orders db is down"},
                                     status=int(request.query.get("code", "500")))

        async def text(request: web.Request) -> web.Response:
            return web.Response(text="plain <b>text</b>", status=404)

        app = web.Application()
        app.router.add_get("/slow/{name}", slow)
        app.router.add_get("/user", user)
        app.router.add_get("/fail", fail)
        app.router.add_get("/text", text)
        return app


USER = {"upstream": "svc-a", "path": "/user", "as": "user"}


def backends(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"timeout": "2s", "backends": [USER, *extra]}


def aggregate(name: str, agg: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "match": {"path": f"/{name}", "methods": ["GET"]}, "aggregate": agg}


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[Services, dict[str, Any], dict[str, ThreadedApp]]]:
    svc = Services()
    cache_app = upstream_app()
    apps = {"svc": ThreadedApp(svc.app()), "cache": ThreadedApp(cache_app)}
    yield svc, cache_app[STATE], apps
    for a in apps.values():
        a.stop()


@pytest.fixture(scope="module")
def gw(services: tuple[Services, dict[str, Any], dict[str, ThreadedApp]],
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    _, _, apps = services
    svc = {"targets": [{"url": apps["svc"].url}]}
    orders = {"upstream": "svc-b", "as": "orders", "timeout": "300ms",
              "path": "/fail?code={query.code}&s={query.s}"}
    config = {
        "upstreams": {"svc-a": svc, "svc-b": svc, "svc-c": svc,
                      "dead": {"targets": [{"url": f"http://127.0.0.1:{free_port()}"}]},
                      "cachesvc": {"targets": [{"url": apps["cache"].url}]}},
        "routes": [
            aggregate("par", {"timeout": "2s", "backends": [
                {"upstream": f"svc-{n}", "path": f"/slow/{n}", "as": n} for n in "abc"]}),
            aggregate("req", backends(orders)),
            aggregate("req-dead", backends({"upstream": "dead", "path": "/x", "as": "orders"})),
            aggregate("opt", backends({**orders, "optional": True})),
            {"name": "cached", "match": {"path": "/c/*rest", "methods": ["GET"]},
             "filters": [{"cache": {"ttl": "30s"}}, {"strip_prefix": 1}],
             "upstream": "cachesvc"},
            {"name": "wrapped", "match": {"path": "/w/*rest", "methods": ["GET"]},
             "filters": [{"envelope": {}}, {"strip_prefix": 1}], "upstream": "svc-a"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-aggregate"), config).start()
    yield proc
    proc.stop()


async def get(url: str, **headers: str) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s:
        return await send(s, url, headers=headers)


# --- aggregate -------------------------------------------------------------------------


async def test_three_slow_backends_are_fetched_in_parallel(gw: GatewayProcess,
                                                          services: Any) -> None:
    svc = services[0]
    svc.peak = 0
    t0 = time.monotonic()
    status, headers, doc = await get(gw.url + "/par")
    elapsed = time.monotonic() - t0
    assert status == 200 and headers["X-Wxgated-Completed"] == "true"
    assert doc["data"] == {"a": {"name": "a"}, "b": {"name": "b"}, "c": {"name": "c"}}
    assert svc.peak == 3  # all three in flight at once at the backends
    assert elapsed < 3 * SLOW  # about the slowest one, never the sum


@pytest.mark.parametrize("route, query, status", [
    ("req", "?code=500&s=0", 502),    # the backend answered 5xx
    ("req", "?code=404&s=0", 502),    # a required backend must answer 2xx
    ("req", "?code=200&s=0.8", 504),  # past its 300ms timeout
    ("req-dead", "", 502),            # nothing listening
])
async def test_required_backend_failure_names_it(gw: GatewayProcess, route: str, query: str,
                                                 status: int) -> None:
    got, headers, doc = await get(gw.url + f"/{route}{query}")
    assert got == status and doc["code"] == status
    assert headers["X-Wxgated-Completed"] == "false"
    assert doc["failed"] == ["orders"] and "orders" in doc["msg"]
    assert doc["data"] is None and doc["trace_id"] == headers["X-Trace-ID"]


async def test_optional_backend_timing_out_is_an_explicit_partial(gw: GatewayProcess) -> None:
    status, headers, doc = await get(gw.url + "/opt?code=200&s=0.8")
    assert status == 200 and headers["X-Wxgated-Completed"] == "false"
    assert doc["code"] == 0 and doc["partial"] == ["orders"]
    assert doc["data"] == {"user": {"nickname": "ming", "level": 3}, "orders": None}
    status, headers, doc = await get(gw.url + "/opt?code=200&s=0")
    assert status == 200 and headers["X-Wxgated-Completed"] == "true"
    assert "partial" not in doc or not doc["partial"]


# --- cache -----------------------------------------------------------------------------


def cc_path(cc: str) -> str:
    return "/c/cc?v=" + cc.replace(" ", "%20").replace(",", "%2C")


async def test_public_answer_is_a_miss_then_a_hit_with_age(gw: GatewayProcess,
                                                           services: Any) -> None:
    calls = services[1]["calls"]
    first = await get(gw.url + cc_path("public, max-age=60"))
    await asyncio.sleep(1.05)
    second = await get(gw.url + cc_path("public, max-age=60"))
    assert (first[1]["X-Cache-Status"], second[1]["X-Cache-Status"]) == ("MISS", "HIT")
    assert second[2] == first[2] and int(second[1]["Age"]) >= 1
    assert calls["/cc?v=public,%20max-age=60"] == 1


@pytest.mark.parametrize("cc", ["private", "no-store", "private, no-store",
                                "max-age=60, PRIVATE", "no-cache"])
async def test_upstream_directives_forbid_storing(gw: GatewayProcess, cc: str) -> None:
    results = [await get(gw.url + cc_path(cc)) for _ in range(2)]
    assert [h["X-Cache-Status"] for _, h, _ in results] == ["BYPASS", "BYPASS"]
    # both went to the upstream, which numbers the calls it gets per path
    assert [doc["n"] for _, _, doc in results] == [1, 2]


async def test_authorization_is_never_shared(gw: GatewayProcess, services: Any) -> None:
    calls = services[1]["calls"]
    a = await get(gw.url + "/c/user", Authorization="Bearer A")
    b = await get(gw.url + "/c/user", Authorization="Bearer B")
    assert (a[1]["X-Cache-Status"], b[1]["X-Cache-Status"]) == ("BYPASS", "BYPASS")
    assert (a[2]["extra"], b[2]["extra"]) == ("Bearer A", "Bearer B")
    anonymous = await get(gw.url + "/c/user")
    assert anonymous[1]["X-Cache-Status"] == "MISS" and anonymous[2]["extra"] is None
    assert calls["/user"] == 3
    # and a later Authorization request does not get the anonymous entry either
    c = await get(gw.url + "/c/user", Authorization="Bearer C")
    assert c[1]["X-Cache-Status"] == "BYPASS" and c[2]["extra"] == "Bearer C"


async def test_concurrent_misses_coalesce_into_one_upstream_call(gw: GatewayProcess,
                                                                 services: Any) -> None:
    calls = services[1]["calls"]
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(send(s, gw.url + "/c/slow") for _ in range(10)))
    assert calls["/slow#started"] == 1
    assert sorted(h["X-Cache-Status"] for _, h, _ in results) == ["HIT"] * 9 + ["MISS"]
    assert all(doc == results[0][2] for _, _, doc in results)


# --- envelope --------------------------------------------------------------------------


async def test_envelope_on_errors_and_non_json(gw: GatewayProcess) -> None:
    status, headers, doc = await get(gw.url + "/w/fail?code=404", **{"X-Trace-ID": "t-env"})
    assert status == 404
    assert doc == {"code": 404, "msg": "orders db is down",
                   "data": {"msg": "orders db is down"}, "trace_id": "t-env"}
    status, headers, body = await get(gw.url + "/w/text")
    assert status == 404 and headers["Content-Type"].startswith("text/plain")
    assert body == b"plain <b>text</b>"  # untouched
