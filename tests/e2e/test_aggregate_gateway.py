"""Black-box: the docs' mini-program home page through a real `wxgated run`.

Two services (users, orders) on real sockets, the WeChat stand-in for login, and the
gateway as a subprocess. Users log in with wx.login codes, then load the home page:
one request, two backends, per-user cache, explicit partial answers. The same process
also serves a CORS route, an `envelope` route and a deprecated route.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp
from tests.support.wechat_standin import make_wechat_app

APPID, SECRET = "wxhomepageapp", "home-page-app-secret"
CALLS: Counter[str] = Counter()
FLAGS = {"orders_down": False}


def users_app() -> web.Application:
    async def user(request: web.Request) -> web.Response:
        openid = request.match_info["openid"]
        CALLS["users:" + openid] += 1
        return web.json_response({"openid": openid, "nickname": f"nick-{openid}",
                                  "avatar": f"https://img.example.com/{openid}.png",
                                  "level": 3, "phone": "13800000000"})

    app = web.Application()
    app.router.add_get("/users/{openid}", user)
    return app


def orders_app() -> web.Application:
    async def orders(request: web.Request) -> web.Response:
        CALLS["orders:" + request.query["user"]] += 1
        if FLAGS["orders_down"]:
            return web.json_response({"error": "db down"}, status=500)
        items = [{"id": i, "title": f"order {i}", "status": "paid", "internal": "x"}
                 for i in range(int(request.query.get("limit", "3")))]
        return web.json_response({"items": items, "total": 9})

    app = web.Application()
    app.router.add_get("/orders", orders)
    return app


HOME_BACKENDS = [
    {"upstream": "user-service", "path": "/users/{claim.openid}", "as": "user",
     "allow": ["nickname", "avatar", "level"]},
    {"upstream": "order-service", "path": "/orders?user={claim.openid}&limit=3",
     "as": "orders", "optional": True, "timeout": "800ms", "unwrap": "items",
     "allow": ["id", "title", "status"]},
]


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Any]]:
    wx_app, ctl = make_wechat_app(APPID, SECRET)
    apps = {"users": ThreadedApp(users_app()), "orders": ThreadedApp(orders_app()),
            "wechat": ThreadedApp(wx_app)}
    yield {"ctl": ctl, **apps}
    for a in apps.values():
        a.stop()


@pytest.fixture(scope="module")
def gw(services: dict[str, Any],
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": services["wechat"].url},
        "jwt": {"issuer": "wxgated", "ttl": "2h",
                "keys": [{"kid": "k1", "alg": "HS256",
                          "secret": "home-page-test-secret-0123456789abcdef"}]},
        "upstreams": {
            "user-service": {"targets": [{"url": services["users"].url}]},
            "order-service": {"targets": [{"url": services["orders"].url}]},
        },
        "routes": [
            {"name": "wx-login", "match": {"path": "/auth/wx/login", "methods": ["POST"]},
             "wechat": "login"},
            {"name": "home", "match": {"path": "/api/v1/home", "methods": ["GET"]},
             "filters": [{"jwt_auth": {}}, {"cache": {"ttl": "30s"}}],
             "aggregate": {"timeout": "2s", "backends": HOME_BACKENDS}},
            {"name": "home-live", "match": {"path": "/api/v1/home-live", "methods": ["GET"]},
             "filters": [{"jwt_auth": {}}],
             "aggregate": {"timeout": "2s", "backends": HOME_BACKENDS}},
            {"name": "h5", "match": {"path": "/h5/profile/:openid",
                                     "methods": ["GET", "OPTIONS"]},
             "filters": [{"cors": {"origins": ["https://*.h5.example.com"],
                                   "credentials": True, "max_age": "10m"}},
                         {"deprecation": {"sunset": "2030-01-01"}},
                         {"rewrite": {"regex": "^.*$", "to": "/users/{param.openid}"}},
                         {"envelope": {}}],
             "upstream": "user-service"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-home"), config).start()
    yield proc
    proc.stop()


async def login(gw: GatewayProcess, ctl: Any, openid: str) -> str:
    code = f"code-{openid}-{len(ctl.codes)}"
    ctl.add_code(code, openid)
    async with aiohttp.ClientSession() as s, \
            s.post(gw.url + "/auth/wx/login", json={"code": code}) as r:
        doc = await r.json()
        assert r.status == 200, doc
        return str(doc["data"]["token"])


async def get(url: str, token: str | None = None, method: str = "GET",
              **headers: str) -> tuple[int, Any, Any]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers) as r:
        body = await r.read()
        doc = await r.json(content_type=None) if body else None
        return r.status, r.headers, doc


async def test_home_page_is_one_request_and_cached_per_user(gw: GatewayProcess,
                                                           services: dict[str, Any]) -> None:
    ctl = services["ctl"]
    token_a = await login(gw, ctl, "oAlice")
    token_b = await login(gw, ctl, "oBob")
    status, h, doc = await get(gw.url + "/api/v1/home", token_a, **{"X-Trace-ID": "t-a1"})
    assert status == 200, doc
    assert (h["X-Wxgated-Completed"], h["X-Cache-Status"]) == ("true", "MISS")
    assert doc["code"] == 0 and doc["trace_id"] == "t-a1" == h["X-Trace-ID"]
    assert doc["data"]["user"] == {"nickname": "nick-oAlice", "level": 3,
                                   "avatar": "https://img.example.com/oAlice.png"}
    assert doc["data"]["orders"][0] == {"id": 0, "title": "order 0", "status": "paid"}
    status, h, again = await get(gw.url + "/api/v1/home", token_a, **{"X-Trace-ID": "t-a2"})
    assert h["X-Cache-Status"] == "HIT" and again["data"] == doc["data"]
    assert again["trace_id"] == "t-a2"
    status, h, bob = await get(gw.url + "/api/v1/home", token_b)
    assert h["X-Cache-Status"] == "MISS"
    assert bob["data"]["user"]["nickname"] == "nick-oBob"  # never Alice's cached page
    assert (CALLS["users:oAlice"], CALLS["users:oBob"]) == (1, 1)
    metrics = gw.metrics()
    assert metric_value(metrics, "wxgated_cache_requests_total", route="home",
                        result="hit") >= 1
    assert metric_value(metrics, "wxgated_upstream_requests_total",
                        upstream="order-service", status="200") >= 2


async def test_home_page_without_token_is_401(gw: GatewayProcess) -> None:
    status, _, doc = await get(gw.url + "/api/v1/home")
    assert status == 401 and doc["code"] == 401


async def test_orders_down_gives_an_explicit_partial_page(gw: GatewayProcess,
                                                         services: dict[str, Any]) -> None:
    token = await login(gw, services["ctl"], "oCarol")
    FLAGS["orders_down"] = True
    try:
        status, h, doc = await get(gw.url + "/api/v1/home-live", token)
    finally:
        FLAGS["orders_down"] = False
    assert status == 200 and h["X-Wxgated-Completed"] == "false"
    assert doc["partial"] == ["orders"] and doc["data"]["orders"] is None
    assert doc["data"]["user"]["nickname"] == "nick-oCarol"


async def test_parallel_home_pages_coalesce_per_user(gw: GatewayProcess,
                                                     services: dict[str, Any]) -> None:
    token = await login(gw, services["ctl"], "oDan")
    results = await asyncio.gather(*(get(gw.url + "/api/v1/home", token) for _ in range(8)))
    assert all(s == 200 for s, _, _ in results)
    assert CALLS["users:oDan"] == 1


async def test_cors_preflight_and_wrapped_answer(gw: GatewayProcess) -> None:
    origin = "https://shop.h5.example.com"
    before = CALLS["users:oEve"]
    status, h, _ = await get(gw.url + "/h5/profile/oEve", method="OPTIONS", Origin=origin,
                             **{"Access-Control-Request-Method": "GET",
                                "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and h["Access-Control-Allow-Origin"] == origin
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert CALLS["users:oEve"] == before  # the preflight never reached the service
    status, h, doc = await get(gw.url + "/h5/profile/oEve", Origin=origin)
    assert status == 200 and h["Access-Control-Allow-Origin"] == origin
    assert h["Sunset"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert doc["code"] == 0 and doc["data"]["nickname"] == "nick-oEve"
    status, h, _ = await get(gw.url + "/h5/profile/oEve", Origin="https://evil.example.org")
    assert "Access-Control-Allow-Origin" not in h
