"""The `cache` filter around the real proxy terminal and a real aiohttp upstream.

Each test builds a chain `cache → upstream` the way the compiler does (same filter,
same proxy handler, real pooled upstream client) and calls it with constructed
Requests; the upstream counts the calls it really gets.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from wxgated.cache.entry import Entry, dumps, loads
from wxgated.cache.memory import MemoryStore
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.handlers import TERMINALS
from wxgated.http.message import Body, Handler, Request, Response
from wxgated.observe.metrics import REGISTRY
from wxgated.registry import Registry
from wxgated.state.memory import MemoryState
from wxgated.upstream.build import build_upstream

STATE = web.AppKey("state", dict)


def upstream_app() -> web.Application:
    calls: Counter[str] = Counter()
    app = web.Application()
    state = app[STATE] = {"calls": calls, "fail": False}

    def answer(request: web.Request, headers: dict[str, str], extra: Any = None,
               status: int = 200) -> web.Response:
        calls[request.path_qs] += 1
        doc = {"n": calls[request.path_qs], "path": request.path_qs, "extra": extra}
        return web.json_response(doc, status=status, headers=headers)

    async def public(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "public, max-age=60"})

    async def cc(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": request.query["v"]})

    async def silent(request: web.Request) -> web.Response:
        return answer(request, {})

    async def user(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "max-age=60"},
                      request.headers.get("Authorization"))

    async def slow(request: web.Request) -> web.Response:
        calls[request.path_qs + "#started"] += 1
        await asyncio.sleep(0.2)
        return answer(request, {"Cache-Control": request.query.get("v", "max-age=60")})

    async def cookie(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "max-age=60", "Set-Cookie": "sid=1"})

    async def status(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "max-age=60"},
                      status=int(request.match_info["code"]))

    async def aged(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "max-age=160", "Age": "100"})

    async def flaky(request: web.Request) -> web.Response:
        if state["fail"]:
            calls[request.path_qs] += 1
            return web.json_response({"error": "down"}, status=503)
        return answer(request, {"Cache-Control": "max-age=60"})

    async def lang(request: web.Request) -> web.Response:
        return answer(request, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"},
                      request.headers.get("Accept-Language"))

    async def big(request: web.Request) -> web.StreamResponse:
        calls[request.path_qs] += 1
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(8):
            await resp.write(bytes([65 + i]) * 512)
        return resp

    app.router.add_get("/public", public)
    app.router.add_get("/cc", cc)
    app.router.add_get("/silent", silent)
    app.router.add_get("/user", user)
    app.router.add_get("/slow", slow)
    app.router.add_get("/cookie", cookie)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/aged", aged)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/lang", lang)
    app.router.add_get("/big", big)

    async def enveloped(request: web.Request) -> web.Response:
        calls[request.path_qs] += 1
        return web.json_response({"code": 0, "data": {"x": 1},
                                  "trace_id": request.headers["X-Trace-ID"]},
                                 headers={"Cache-Control": "max-age=60"})

    app.router.add_get("/enveloped", enveloped)
    app.router.add_post("/public", public)
    return app




class Harness:
    def __init__(self, url: str) -> None:
        self.url = url
        self.registries: list[Registry] = []

    def chain(self, cfg: dict[str, Any] | None, *, name: str | None = None,
              registry: Registry | None = None, state: Any = None) -> Handler:
        """The compiled `cache → upstream` chain of a route, as the compiler builds it."""
        registry = registry or Registry()
        self.registries.append(registry)
        name = name or f"r-{uuid.uuid4().hex[:8]}"
        route = {"name": name, "match": {"path": "/*rest"}, "filters": [{"cache": cfg}],
                 "upstream": "svc"}
        up = build_upstream("svc", {"targets": [{"url": self.url}],
                                    "timeouts": {"read": "2s"}}, registry)
        ctx = CompileContext(config={}, registry=registry, upstreams={"svc": up},
                             services={"state": state or MemoryState()},
                             route_name=name, route=route)
        handler = TERMINALS["upstream"].build("svc", route, ctx)
        handler = FILTERS["cache"](cfg, ctx).wrap(handler)
        registry.commit()
        return handler

    def close(self) -> None:
        for r in self.registries:
            for _, obj in r.items():
                close = getattr(obj, "close", None)
                if close is not None:
                    close()


def request(path: str, method: str = "GET", headers: dict[str, str] | None = None,
            claims: dict[str, Any] | None = None) -> Request:
    p, _, q = path.partition("?")
    hdrs = [(b"host", b"gw.test")]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    req = Request(method, p, q, hdrs, Body.of(b""), client_ip="127.0.0.1",
                  trace_id=uuid.uuid4().hex)
    req.claims = claims
    return req


async def call(chain: Handler, path: str, **kw: Any) -> tuple[Response, dict[str, Any] | None]:
    resp = await chain(request(path, **kw))
    body = await resp.read_body()
    return resp, (json.loads(body) if body else None)


def status_of(resp: Response) -> str:
    v = resp.header(b"x-cache-status")
    return v.decode() if v is not None else ""


@pytest.fixture
async def env(serve: Any) -> AsyncIterator[tuple[Harness, web.Application]]:
    app = upstream_app()
    h = Harness(await serve(app))
    yield h, app[STATE]
    h.close()


async def test_second_request_is_a_hit_with_age(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r1, d1 = await call(chain, "/public")
    r2, d2 = await call(chain, "/public")
    assert (status_of(r1), status_of(r2)) == ("MISS", "HIT")
    assert d1 == d2 and app["calls"]["/public"] == 1
    assert r2.header(b"age") == b"0"
    assert r2.header(b"content-type").startswith(b"application/json")


async def test_age_includes_the_upstreams_age(env: Any) -> None:
    h, _ = env
    chain = h.chain({"ttl": "1h"})
    await call(chain, "/aged")
    r, _ = await call(chain, "/aged")
    assert status_of(r) == "HIT" and int(r.header(b"age")) >= 100


@pytest.mark.parametrize("cc", ["private", "no-store", "private, no-store", "No-Store",
                                "no-cache", "max-age=60, PRIVATE", "max-age=0"])
async def test_upstream_directives_forbid_storing(env: Any, cc: str) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    path = "/cc?v=" + cc.replace(" ", "%20").replace(",", "%2C")
    statuses = [status_of((await call(chain, path))[0]) for _ in range(2)]
    assert statuses == ["BYPASS", "BYPASS"]
    assert sum(n for k, n in app["calls"].items() if k.startswith("/cc")) == 2


async def test_set_cookie_answers_are_not_stored(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r1, _ = await call(chain, "/cookie")
    r2, _ = await call(chain, "/cookie")
    assert status_of(r2) == "BYPASS" and app["calls"]["/cookie"] == 2
    assert r2.header(b"set-cookie") == b"sid=1"


async def test_authorization_without_a_verified_user_is_never_cached(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r1, d1 = await call(chain, "/user", headers={"Authorization": "Bearer A"})
    r2, d2 = await call(chain, "/user", headers={"Authorization": "Bearer B"})
    assert (status_of(r1), status_of(r2)) == ("BYPASS", "BYPASS")
    assert (d1["extra"], d2["extra"]) == ("Bearer A", "Bearer B")
    # and it did not fill the shared entry either
    r3, d3 = await call(chain, "/user")
    assert status_of(r3) == "MISS" and d3["extra"] is None


async def test_user_b_never_gets_user_a_answer(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    a = {"headers": {"Authorization": "Bearer A"}, "claims": {"openid": "oA"}}
    b = {"headers": {"Authorization": "Bearer B"}, "claims": {"openid": "oB"}}
    ra, da = await call(chain, "/user", **a)
    rb, db = await call(chain, "/user", **b)
    assert (status_of(ra), status_of(rb)) == ("MISS", "MISS")
    assert db["extra"] == "Bearer B"
    ra2, da2 = await call(chain, "/user", **a)
    rb2, db2 = await call(chain, "/user", **b)
    assert (status_of(ra2), status_of(rb2)) == ("HIT", "HIT")
    assert (da2["extra"], db2["extra"]) == ("Bearer A", "Bearer B")
    assert app["calls"]["/user"] == 2


async def test_gateway_tokens_are_keyed_by_sub(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    a = {"headers": {"Authorization": "Bearer A"}, "claims": {"sub": "oA", "sid": "1"}}
    b = {"headers": {"Authorization": "Bearer B"}, "claims": {"sub": "oB", "sid": "2"}}
    await call(chain, "/user", **a)
    r, d = await call(chain, "/user", **b)
    assert status_of(r) == "MISS" and d["extra"] == "Bearer B"


async def test_claims_without_openid_bypass(env: Any) -> None:
    h, _ = env
    chain = h.chain({"ttl": "30s"})
    r, _ = await call(chain, "/user", claims={"role": "x"})
    assert status_of(r) == "BYPASS"


async def test_ten_concurrent_misses_make_one_upstream_call(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    results = await asyncio.gather(*(call(chain, "/slow") for _ in range(10)))
    assert app["calls"]["/slow#started"] == 1
    assert sorted(status_of(r) for r, _ in results) == ["HIT"] * 9 + ["MISS"]
    assert all(d == results[0][1] for _, d in results)


async def test_coalescing_never_shares_an_uncacheable_answer(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    results = await asyncio.gather(*(call(chain, "/slow?v=private") for _ in range(5)))
    assert app["calls"]["/slow?v=private#started"] == 5
    assert sorted(d["n"] for _, d in results) == [1, 2, 3, 4, 5]
    assert {status_of(r) for r, _ in results} == {"BYPASS"}


async def test_client_no_cache_refreshes_the_entry(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    await call(chain, "/public")
    r, d = await call(chain, "/public", headers={"Cache-Control": "no-cache"})
    assert status_of(r) == "BYPASS" and d["n"] == 2
    r, d = await call(chain, "/public")
    assert status_of(r) == "HIT" and d["n"] == 2  # the refreshed answer was stored
    r, d = await call(chain, "/public", headers={"Pragma": "no-cache"})
    assert d["n"] == 3


async def test_client_no_store_bypasses_both_ways(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r, _ = await call(chain, "/public", headers={"Cache-Control": "no-store"})
    assert status_of(r) == "BYPASS"
    r, _ = await call(chain, "/public")
    assert status_of(r) == "MISS"


async def test_client_no_cache_ignored_when_configured(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s", "honor_client_no_cache": False})
    await call(chain, "/public")
    r, _ = await call(chain, "/public", headers={"Cache-Control": "no-cache"})
    assert status_of(r) == "HIT" and app["calls"]["/public"] == 1


async def test_ttl_caps_the_upstream_max_age(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "300ms"})
    await call(chain, "/public")
    assert status_of((await call(chain, "/public"))[0]) == "HIT"
    await asyncio.sleep(0.4)
    r, d = await call(chain, "/public")
    assert status_of(r) == "MISS" and d["n"] == 2


async def test_ttl_gives_freshness_when_the_upstream_gives_none(env: Any) -> None:
    h, app = env
    with_ttl = h.chain({"ttl": "30s"})
    await call(with_ttl, "/silent")
    assert status_of((await call(with_ttl, "/silent"))[0]) == "HIT"
    without = h.chain({})
    await call(without, "/silent")
    assert status_of((await call(without, "/silent"))[0]) == "BYPASS"


async def test_query_parameter_order_does_not_split_the_key(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    await call(chain, "/public?a=1&b=2")
    r, _ = await call(chain, "/public?b=2&a=1")
    assert status_of(r) == "HIT"
    r, _ = await call(chain, "/public?a=1&b=3")
    assert status_of(r) == "MISS"


async def test_post_passes_through(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    for _ in range(2):
        r, _ = await call(chain, "/public", method="POST")
        assert status_of(r) == "BYPASS"
    assert app["calls"]["/public"] == 2


async def test_cacheable_statuses(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    for code, expect in ((404, "HIT"), (410, "HIT"), (500, "BYPASS"), (403, "BYPASS")):
        await call(chain, f"/status/{code}")
        r, _ = await call(chain, f"/status/{code}")
        assert (r.status, status_of(r)) == (code, expect)


async def test_larger_bodies_pass_whole_and_uncached(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s", "max_entry": "1KiB"})
    for _ in range(2):
        resp = await chain(request("/big"))
        assert status_of(resp) == "BYPASS"
        body = await resp.read_body()
        assert body == b"".join(bytes([65 + i]) * 512 for i in range(8))
    assert app["calls"]["/big"] == 2
    small = h.chain({"ttl": "30s"})  # default max_entry 1MiB: stored
    await small(request("/big"))
    assert status_of(await small(request("/big"))) == "HIT"


async def test_stale_if_error_serves_the_expired_entry(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "200ms", "stale_if_error": "10s"})
    _, d1 = await call(chain, "/flaky")
    app["fail"] = True
    await asyncio.sleep(0.3)
    r, d = await call(chain, "/flaky")
    assert status_of(r) == "STALE" and r.status == 200 and d == d1
    app["fail"] = False
    r, d = await call(chain, "/flaky")
    assert status_of(r) == "MISS" and d["n"] == 3


async def test_without_stale_if_error_the_failure_shows(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "200ms"})
    await call(chain, "/flaky")
    app["fail"] = True
    await asyncio.sleep(0.3)
    r, _ = await call(chain, "/flaky")
    assert r.status == 503 and status_of(r) == "BYPASS"


async def test_vary_headers_split_the_key(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s", "vary": ["header.accept-language"]})
    _, en = await call(chain, "/lang", headers={"Accept-Language": "en"})
    r, zh = await call(chain, "/lang", headers={"Accept-Language": "zh"})
    assert status_of(r) == "MISS" and zh["extra"] == "zh"
    r, en2 = await call(chain, "/lang", headers={"Accept-Language": "en"})
    assert status_of(r) == "HIT" and en2 == en


async def test_upstream_vary_on_an_unkeyed_header_is_not_stored(env: Any) -> None:
    h, _ = env
    chain = h.chain({"ttl": "30s"})
    await call(chain, "/lang", headers={"Accept-Language": "en"})
    r, d = await call(chain, "/lang", headers={"Accept-Language": "zh"})
    assert status_of(r) == "BYPASS" and d["extra"] == "zh"


async def test_head_is_cached_apart_and_keeps_its_length(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    get, _ = await call(chain, "/public")
    await chain(request("/public", method="HEAD"))
    head = await chain(request("/public", method="HEAD"))
    assert status_of(head) == "HIT" and head.body == b""
    assert head.header(b"content-length") == get.header(b"content-length")


async def test_cookie_requests_are_not_shared(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r, _ = await call(chain, "/public", headers={"Cookie": "sid=secret"})
    assert status_of(r) == "BYPASS"


async def test_memory_entries_survive_reload_of_an_unchanged_route(env: Any) -> None:
    h, app = env
    registry = Registry()
    old = h.chain({"ttl": "30s"}, name="home", registry=registry)
    await call(old, "/public")
    same = h.chain({"ttl": "30s"}, name="home", registry=registry)
    assert status_of((await call(same, "/public"))[0]) == "HIT"
    changed = h.chain({"ttl": "20s"}, name="home", registry=registry)
    assert status_of((await call(changed, "/public"))[0]) == "MISS"


async def test_state_store_is_shared_between_instances(env: Any, redis_url: str) -> None:
    from wxgated.state.redis import RedisState

    h, app = env
    name = f"shared-{uuid.uuid4().hex[:8]}"
    s1, s2 = RedisState(redis_url), RedisState(redis_url)
    try:
        worker1 = h.chain({"ttl": "1h", "store": "state"}, name=name, state=s1)
        worker2 = h.chain({"ttl": "1h", "store": "state"}, name=name, state=s2)
        r1, d1 = await call(worker1, "/aged")
        r2, d2 = await call(worker2, "/aged")
        assert (status_of(r1), status_of(r2)) == ("MISS", "HIT")
        assert d1 == d2 and app["calls"]["/aged"] == 1
        assert int(r2.header(b"age")) >= 100
    finally:
        await s1.close()
        await s2.close()


async def test_metric_counts_hits_misses_and_bypasses(env: Any) -> None:
    h, _ = env
    name = f"m-{uuid.uuid4().hex[:8]}"
    chain = h.chain({"ttl": "30s"}, name=name)
    for path in ("/public", "/public", "/public", "/cookie"):
        await call(chain, path)

    def count(result: str) -> float | None:
        return REGISTRY.get_sample_value("wxgated_cache_requests_total",
                                         {"route": name, "result": result})

    assert (count("miss"), count("hit"), count("bypass")) == (1.0, 2.0, 1.0)


@pytest.mark.parametrize("cfg", [{"ttl": "soon"}, {"vary": ["cookie"]},
                                 {"max_entry": "lots"}])
def test_bad_options_are_config_errors(cfg: dict[str, Any]) -> None:
    ctx = CompileContext(config={}, registry=Registry(), route_name="r", route={})
    with pytest.raises(SemanticError):
        FILTERS["cache"](cfg, ctx)


async def test_a_hit_carries_the_current_trace_id_not_the_stored_one(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    first = request("/enveloped")
    await (await chain(first)).read_body()
    again = request("/enveloped")
    again.trace_id = "the-second-request-trace"
    resp = await chain(again)
    doc = json.loads(await resp.read_body())
    assert status_of(resp) == "HIT" and app["calls"]["/enveloped"] == 1
    assert doc["trace_id"] == "the-second-request-trace"
    assert resp.header(b"content-length") == str(len(resp.body)).encode()


def test_entries_round_trip_through_their_binary_form() -> None:
    e = Entry(203, [(b"content-type", b"application/json"), (b"x-a", b"\x00\xff")],
              b'{"trace_id":"t1"}', 1.5, 2.5, 3.5, b'"trace_id":"t1"')
    assert loads(dumps(e)) == e
    assert loads(b"garbage") is None and loads(dumps(e)[:20]) is None


async def test_memory_store_evicts_least_recently_used_by_bytes() -> None:
    far = time.time() + 60
    store = MemoryStore(max_bytes=3 * (1000 + 200))

    def entry(tag: bytes) -> Entry:
        return Entry(200, [], tag * 1000, 0.0, far, far)

    for k in (b"a", b"b", b"c"):
        await store.put(k.decode(), entry(k))
    assert await store.get("a") is not None  # a is now the most recently used
    await store.put("d", entry(b"d"))
    assert await store.get("b") is None
    assert {k for k in "acd" if await store.get(k)} == {"a", "c", "d"}
    assert store.used <= store.max_bytes
    await store.put("huge", Entry(200, [], b"x" * 10_000, 0.0, far, far))
    assert await store.get("huge") is None and len(store) == 3
