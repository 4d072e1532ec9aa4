"""The `envelope` filter around the real proxy terminal and a real aiohttp upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, Handler, Request, Response
from wxgated.registry import Registry
from wxgated.terminals import TERMINALS
from wxgated.upstream.build import build_upstream

BIG = b'{"blob": "' + b"x" * 4000 + b'"}'


def upstream_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": 7, "name": "小明"}, headers={"ETag": '"abc"'})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    async def failed(request: web.Request) -> web.Response:
        key = request.query.get("key", "message")
        return web.json_response({key: "no such user", "detail": 42}, status=404)

    async def bare_error(request: web.Request) -> web.Response:
        return web.json_response({"detail": 1}, status=503)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(body=b"{not json", content_type="application/json")

    async def vendor(request: web.Request) -> web.Response:
        return web.Response(body=b'{"a": 1}', content_type="application/problem+json",
                            status=400)

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BIG), 1000):
            await resp.write(BIG[i:i + 1000])
        return resp

    app = web.Application()
    for path, h in (("/ok", ok), ("/list", listing), ("/failed", failed), ("/bare", bare_error),
                    ("/text", text), ("/broken", broken), ("/vendor", vendor), ("/big", big)):
        app.router.add_get(path, h)
    return app


@pytest.fixture
async def chain_for(serve: Any) -> AsyncIterator[Any]:
    url = await serve(upstream_app())
    registry = Registry()

    def build(cfg: dict[str, Any] | None) -> Handler:
        route = {"name": "wrapped", "match": {"path": "/*p"}, "filters": [{"envelope": cfg}],
                 "upstream": "svc"}
        ctx = CompileContext(config={}, registry=registry, route_name="wrapped", route=route,
                             upstreams={"svc": build_upstream("svc", {"targets": [{"url": url}]},
                                                              registry)})
        handler = TERMINALS["upstream"].build("svc", route, ctx)
        return chain([FILTERS["envelope"](cfg, ctx)], handler)

    yield build
    registry.commit()
    await registry.aclose_all()


def request(path: str, method: str = "GET") -> Request:
    p, _, q = path.partition("?")
    return Request(method, p, q, [(b"host", b"gw")], Body.of(b""), client_ip="127.0.0.1",
                   trace_id="trace-1")


async def test_json_success_is_wrapped(chain_for: Any) -> None:
    resp = await chain_for({})(request("/ok"))
    doc = json.loads(await resp.read_body())
    assert resp.status == 200
    assert doc == {"code": 0, "msg": "ok", "data": {"id": 7, "name": "小明"},
                   "trace_id": "trace-1"}
    assert resp.header(b"content-length") == str(len(resp.body)).encode()
    assert resp.header(b"etag") is None  # it described the old body
    assert resp.header(b"content-type").startswith(b"application/json")


async def test_any_json_value_becomes_data(chain_for: Any) -> None:
    resp = await chain_for({})(request("/list"))
    assert json.loads(resp.body)["data"] == [1, 2, 3]


@pytest.mark.parametrize("key", ["msg", "message", "errmsg", "error"])
async def test_error_status_keeps_status_and_the_backends_message(chain_for: Any,
                                                                   key: str) -> None:
    resp = await chain_for({})(request(f"/failed?key={key}"))
    doc = json.loads(resp.body)
    assert resp.status == 404
    assert (doc["code"], doc["msg"]) == (404, "no such user")
    assert doc["data"] == {key: "no such user", "detail": 42}


async def test_error_without_a_message_gets_the_reason_phrase(chain_for: Any) -> None:
    resp = await chain_for({})(request("/bare"))
    doc = json.loads(resp.body)
    assert (resp.status, doc["code"], doc["msg"]) == (503, 503, "Service Unavailable")


async def test_plus_json_media_types_are_json(chain_for: Any) -> None:
    resp = await chain_for({})(request("/vendor"))
    assert json.loads(resp.body)["code"] == 400


@pytest.mark.parametrize("path, body", [("/text", b"plain words"), ("/broken", b"{not json")])
async def test_non_json_passes_untouched(chain_for: Any, path: str, body: bytes) -> None:
    resp = await chain_for({})(request(path))
    assert await resp.read_body() == body


async def test_head_passes_untouched(chain_for: Any) -> None:
    resp = await chain_for({})(request("/ok", method="HEAD"))
    assert await resp.read_body() == b""


async def test_bodies_over_max_size_stream_through_unwrapped(chain_for: Any) -> None:
    resp = await chain_for({"max_size": "1KiB"})(request("/big"))
    assert await resp.read_body() == BIG
    resp = await chain_for({})(request("/big"))
    assert json.loads(await resp.read_body())["data"] == json.loads(BIG)


async def test_an_aggregate_answer_is_not_wrapped_twice() -> None:
    from wxgated.gateway.envelope import envelope

    async def aggregate(req: Request) -> Response:
        return envelope(200, {"a": 1}, trace_id=req.trace_id,
                        headers=[(b"x-wxgated-completed", b"true")])

    ctx = CompileContext(config={}, registry=Registry())
    resp = await chain([FILTERS["envelope"]({}, ctx)], aggregate)(request("/home"))
    assert json.loads(resp.body)["data"] == {"a": 1}


def test_bad_max_size_is_a_config_error() -> None:
    ctx = CompileContext(config={}, registry=Registry())
    with pytest.raises(SemanticError):
        FILTERS["envelope"]({"max_size": "huge"}, ctx)
