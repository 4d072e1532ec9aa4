"""Test helpers for the `cache` filter: a counting upstream and the compiled chain.

Each test builds a chain `cache → upstream` the way the compiler does (same filter,
same proxy handler, real pooled upstream client) and calls it with constructed
Requests; the upstream counts the calls it really gets.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from wxgated.config.context import CompileContext
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, Handler, Request, Response
from wxgated.registry import Registry
from wxgated.state.memory import MemoryState
from wxgated.terminals import TERMINALS
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
        handler = chain([FILTERS["cache"](cfg, ctx)], handler)
        registry.commit()
        return handler

    async def aclose(self) -> None:
        for r in self.registries:
            await r.aclose_all()


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
