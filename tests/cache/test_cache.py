"""Cache semantics: HIT/MISS/BYPASS, directives, per-user keys, coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.cache_harness import call, request, status_of
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.registry import Registry


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
    assert head.header(b"content-length") == str(len(get.body)).encode()


async def test_cookie_requests_are_not_shared(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    r, _ = await call(chain, "/public", headers={"Cookie": "sid=secret"})
    assert status_of(r) == "BYPASS"


@pytest.mark.parametrize("cfg", [{"ttl": "soon"}, {"vary": ["cookie"]},
                                 {"max_entry": "lots"}])
def test_bad_options_are_config_errors(cfg: dict[str, Any]) -> None:
    ctx = CompileContext(config={}, registry=Registry(), route_name="r", route={})
    with pytest.raises(SemanticError):
        FILTERS["cache"](cfg, ctx)
