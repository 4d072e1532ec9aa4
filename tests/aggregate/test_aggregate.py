"""The `aggregate` terminal against real aiohttp backends through the real upstream pools."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.servers import free_port
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.http.message import Body, Handler, Request, Response
from wxgated.observe.metrics import REGISTRY, flush
from wxgated.registry import Registry
from wxgated.terminals import TERMINALS
from wxgated.upstream.build import build_upstream

SEEN = web.AppKey("seen", list)


def backend_app() -> web.Application:
    app = web.Application()
    seen: list[dict[str, Any]] = []
    app[SEEN] = seen

    def record(request: web.Request) -> None:
        seen.append({"raw": request.raw_path, "headers": request.headers.copy()})

    async def slow(request: web.Request) -> web.Response:
        record(request)
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        return web.json_response({"slept": request.query.get("s", "0.3"),
                                  "tag": request.match_info["tag"]})

    async def user(request: web.Request) -> web.Response:
        record(request)
        return web.json_response({"id": 42, "nick": "ming", "phone": "138", "openid": "o1",
                                  "profile": {"avatar": "a.png", "secret": "s"}})

    async def orders(request: web.Request) -> web.Response:
        record(request)
        return web.json_response({"items": [{"id": 1, "sku": "x", "cost": 3},
                                            {"id": 2, "sku": "y", "cost": 4}],
                                  "uid": request.query.get("uid")})

    async def trickle(request: web.Request) -> web.StreamResponse:
        """A JSON answer sent one byte every 0.1 s (2 s in all): each read is quick, the
        whole is not."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for byte in b'{"a": "%s"}' % (b"x" * 12):
            await resp.write(bytes([byte]))
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    async def wrapped(request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "data": {"coupons": 3}})

    async def echo(request: web.Request) -> web.Response:
        record(request)
        return web.json_response({"raw": request.raw_path, "total": 1})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=int(request.match_info["code"]))

    async def notjson(request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    async def scalar(request: web.Request) -> web.Response:
        return web.json_response([1, 2])

    for path, handler in (("/slow/{tag}", slow), ("/users/{id}", user), ("/orders", orders),
                          ("/wrapped", wrapped), ("/echo/{tail:.*}", echo),
                          ("/status/{code}", status), ("/notjson", notjson),
                          ("/scalar", scalar), ("/trickle", trickle)):
        app.router.add_get(path, handler)
    app.router.add_post("/echo/{tail:.*}", echo)
    return app


class Env:
    def __init__(self, url: str, app: web.Application) -> None:
        self.url = url
        self.seen = app[SEEN]
        self.registry = Registry()
        self.upstreams = {
            "users": build_upstream("users", {"targets": [{"url": url}]}, self.registry),
            "orders": build_upstream("orders", {"targets": [{"url": url}]}, self.registry),
            "dead": build_upstream("dead", {"targets": [{"url": f"http://127.0.0.1:{free_port()}"}]},
                                   self.registry),
        }

    def build(self, agg: dict[str, Any], path: str = "/home") -> Handler:
        route = {"name": "home", "match": {"path": path}, "aggregate": agg}
        ctx = CompileContext(config={}, registry=self.registry, upstreams=self.upstreams,
                             route_name="home", route=route)
        return TERMINALS["aggregate"].build(agg, route, ctx)


@pytest.fixture
async def env(serve: Any) -> AsyncIterator[Env]:
    app = backend_app()
    e = Env(await serve(app), app)
    yield e
    for up in e.upstreams.values():
        for target in up.targets:
            target.close()


def request(path: str = "/home", *, params: dict[str, str] | None = None,
            claims: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            trace_id: str = "t-1") -> Request:
    p, _, q = path.partition("?")
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    req = Request("GET", p, q, hdrs, Body.of(b""), client_ip="10.0.0.9", trace_id=trace_id)
    req.params = params or {}
    req.claims = claims
    return req


async def run(handler: Handler, req: Request | None = None) -> tuple[Response, dict[str, Any]]:
    resp = await handler(req or request())
    return resp, json.loads(resp.body)


def completed(resp: Response) -> bytes | None:
    return resp.header(b"x-wxgated-completed")


async def test_three_slow_backends_take_about_the_slowest(env: Env) -> None:
    handler = env.build({"timeout": "2s", "backends": [
        {"upstream": "users", "path": f"/slow/{t}?s=0.3", "as": t} for t in ("a", "b", "c")]})
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp, doc = await run(handler)
    elapsed = loop.time() - start
    assert resp.status == 200 and completed(resp) == b"true"
    assert {k: v["tag"] for k, v in doc["data"].items()} == {"a": "a", "b": "b", "c": "c"}
    assert (doc["code"], doc["msg"], doc["trace_id"]) == (0, "ok", "t-1")
    assert "partial" not in doc
    assert elapsed < 0.7, f"backends ran one after another ({elapsed:.2f}s for 3×0.3s)"


async def test_backends_without_as_merge_into_the_root(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "allow": ["id", "nick"]},
        {"upstream": "orders", "path": "/orders", "allow": ["uid"]}]})
    _, doc = await run(handler)
    assert doc["data"] == {"id": 42, "nick": "ming", "uid": None}


async def test_failed_optional_backend_is_listed_as_partial(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "as": "user", "allow": ["id"]},
        {"upstream": "orders", "path": "/status/500", "as": "orders", "optional": True}]})
    resp, doc = await run(handler)
    assert resp.status == 200 and completed(resp) == b"false"
    assert doc["partial"] == ["orders"] and doc["msg"] == "partial"
    assert doc["data"] == {"user": {"id": 42}, "orders": None}


async def test_status_on_partial(env: Env) -> None:
    handler = env.build({"status_on_partial": 207, "backends": [
        {"upstream": "users", "path": "/users/1", "as": "user"},
        {"upstream": "dead", "path": "/x", "as": "x", "optional": True}]})
    resp, doc = await run(handler)
    assert resp.status == 207 and doc["partial"] == ["x"]


@pytest.mark.parametrize("path, upstream, status", [
    ("/status/500", "orders", 502), ("/status/404", "orders", 502),
    ("/notjson", "orders", 502), ("/x", "dead", 502), ("/slow/t?s=0.8", "orders", 504),
    ("/scalar", "orders", 502),  # an array cannot merge into the root
])
async def test_required_backend_failure_names_it(env: Env, path: str, upstream: str,
                                                 status: int) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "as": "user"},
        {"upstream": upstream, "path": path, "name": "orders", "timeout": "300ms"}]})
    resp, doc = await run(handler)
    assert resp.status == status and doc["code"] == status
    assert completed(resp) == b"false"
    assert doc["failed"] == ["orders"] and "orders" in doc["msg"]
    assert doc["data"] is None


async def test_required_failure_answers_without_waiting_for_slow_ones(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/slow/a?s=0.8", "as": "slow", "optional": True},
        {"upstream": "dead", "path": "/x", "as": "x"}]})
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp, _ = await run(handler)
    assert resp.status == 502 and loop.time() - start < 0.6


async def test_overall_timeout_bounds_every_backend(env: Env) -> None:
    handler = env.build({"timeout": "300ms", "backends": [
        {"upstream": "users", "path": "/slow/a?s=0.8", "as": "a", "timeout": "5s"}]})
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp, doc = await run(handler)
    assert resp.status == 504 and doc["failed"] == ["a"]
    assert loop.time() - start < 0.7


async def test_overall_timeout_bounds_a_backend_that_trickles(env: Env) -> None:
    # every read comes within the read timeout; only the route's deadline stops it
    handler = env.build({"timeout": "400ms", "backends": [
        {"upstream": "users", "path": "/trickle", "as": "a"},
        {"upstream": "orders", "path": "/orders", "as": "o", "optional": True}]})
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp, doc = await run(handler)
    assert resp.status == 504 and doc["failed"] == ["a"]
    assert loop.time() - start < 1.5


async def test_placeholders_are_filled_and_url_encoded(env: Env) -> None:
    handler = env.build({"backends": [{
        "upstream": "users", "as": "e",
        "path": "/echo/{param.id}/{claim.openid}?q={query.q}&h={header.x-city}"}]},
        path="/home/:id")
    req = request("/home/x?q=a%20b%26c%3Dd", params={"id": "a/b c"},
                  claims={"openid": "o?1#"}, headers={"X-City": "上海"})
    resp, doc = await run(handler, req)
    assert resp.status == 200
    assert doc["data"]["e"]["raw"] == \
        "/echo/a%2Fb%20c/o%3F1%23?q=a%20b%26c%3Dd&h=%E4%B8%8A%E6%B5%B7"


async def test_missing_values_are_the_clients_fault(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/{claim.openid}", "as": "user"}]})
    resp, doc = await run(handler)
    assert resp.status == 401 and doc["failed"] == ["user"]
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "as": "user"},
        {"upstream": "orders", "path": "/orders?uid={query.uid}", "as": "o", "optional": True}]})
    resp, doc = await run(handler)
    assert resp.status == 200 and doc["partial"] == ["o"]


async def test_trace_and_identity_reach_the_backends(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "as": "u",
         "headers": {"X-Client-Lang": "{header.accept-language}"}}]})
    req = request(claims={"openid": "oABC", "unionid": "uXYZ"}, trace_id="trace-77",
                  headers={"Accept-Language": "zh-CN"})
    await run(handler, req)
    h = env.seen[-1]["headers"]
    assert h["X-Trace-ID"] == "trace-77"
    assert h["X-WX-OpenID"] == "oABC" and h["X-WX-UnionID"] == "uXYZ"
    assert h["traceparent"].startswith("00-") and h["X-Client-Lang"] == "zh-CN"


async def test_gateway_tokens_keep_the_openid_in_sub(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/echo/{claim.openid}", "as": "e"}]})
    _, doc = await run(handler, request(claims={"sub": "oSUB", "sid": "s1"}))
    assert doc["data"]["e"]["raw"] == "/echo/oSUB"
    assert env.seen[-1]["headers"]["X-WX-OpenID"] == "oSUB"


async def test_field_selection(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "users", "path": "/users/1", "as": "user",
         "deny": ["phone", "openid", "profile.secret"], "rename": {"nick": "nickname"}},
        {"upstream": "orders", "path": "/orders", "as": "orders",
         "unwrap": "items", "allow": ["id", "sku"], "rename": {"sku": "code"}},
        {"upstream": "orders", "path": "/wrapped", "name": "w", "unwrap": "data"}]})
    _, doc = await run(handler)
    assert doc["data"] == {
        "user": {"id": 42, "nickname": "ming", "profile": {"avatar": "a.png"}},
        "orders": [{"id": 1, "code": "x"}, {"id": 2, "code": "y"}],
        "coupons": 3,
    }


async def test_a_step_can_feed_the_next(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "orders", "path": "/orders?uid={resp.user.id}", "as": "orders",
         "allow": ["uid"]},
        {"upstream": "users", "path": "/users/1", "as": "user", "allow": ["id"]},
        {"upstream": "users", "path": "/echo/after", "name": "last", "after": "orders",
         "include": False}]})
    resp, doc = await run(handler)
    assert doc["data"] == {"orders": {"uid": "42"}, "user": {"id": 42}}
    assert [s["raw"] for s in env.seen] == ["/users/1", "/orders?uid=42", "/echo/after"]


async def test_steps_after_a_failed_optional_step_are_partial_too(env: Env) -> None:
    handler = env.build({"backends": [
        {"upstream": "dead", "path": "/x", "as": "user", "optional": True},
        {"upstream": "orders", "path": "/orders?uid={resp.user.id}", "as": "orders",
         "optional": True},
        {"upstream": "users", "path": "/users/1", "as": "u", "allow": ["id"]}]})
    resp, doc = await run(handler)
    assert resp.status == 200 and doc["partial"] == ["user", "orders"]
    assert doc["data"] == {"user": None, "orders": None, "u": {"id": 42}}


async def test_backend_calls_count_in_upstream_metrics(env: Env) -> None:
    handler = env.build({"backends": [{"upstream": "users", "path": "/users/1", "as": "u"}]})
    labels = {"upstream": "users", "target": env.url, "status": "200"}
    flush()  # per-request metrics are counted locally and handed over at flush
    before = REGISTRY.get_sample_value("wxgated_upstream_requests_total", labels) or 0.0
    await run(handler)
    await run(handler)
    flush()
    assert REGISTRY.get_sample_value("wxgated_upstream_requests_total", labels) == before + 2


@pytest.mark.parametrize("agg, where", [
    ({"backends": [{"upstream": "nope", "path": "/"}]}, ("backends", 0, "upstream")),
    ({"backends": [{"upstream": "users", "path": "/u/{param.id}"}]}, ("backends", 0, "path")),
    ({"backends": [{"upstream": "users", "path": "/u/{session.id}"}]}, ("backends", 0, "path")),
    ({"backends": [{"upstream": "users", "path": "u"}]}, ("backends", 0, "path")),
    ({"backends": [{"upstream": "users", "path": "/a"}, {"upstream": "users", "path": "/b"}]},
     ("backends", 1)),
    ({"backends": [{"upstream": "users", "path": "/a?x={resp.ghost.id}"}]}, ("backends", 0)),
    ({"backends": [{"upstream": "users", "path": "/a", "name": "a", "after": "b"},
                   {"upstream": "users", "path": "/b", "name": "b", "after": ["a"]}]},
     ("backends", 0)),
    ({"timeout": "soon", "backends": [{"upstream": "users", "path": "/"}]}, ("timeout",)),
])
def test_config_mistakes_are_reported_where_they_are(env: Env, agg: dict[str, Any],
                                                      where: tuple[Any, ...]) -> None:
    with pytest.raises(SemanticError) as err:
        env.build(agg)
    assert err.value.path == where

