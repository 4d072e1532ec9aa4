"""The `cors` filter in front of a `respond` terminal: what a browser would see."""

from __future__ import annotations

from typing import Any

import pytest

from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain as engine_chain
from wxgated.http.message import Body, Handler, HTTPError, Request, Response
from wxgated.registry import Registry
from wxgated.terminals import TERMINALS

CFG = {"origins": ["https://admin.example.com", "*.h5.example.com"],
       "methods": ["GET", "POST"], "expose_headers": ["X-Trace-ID"], "credentials": True,
       "max_age": "10m"}


def chain(cfg: dict[str, Any], terminal: Handler | None = None) -> tuple[Handler, list[int]]:
    ctx = CompileContext(config={}, registry=Registry(), route_name="c", route={})
    calls: list[int] = []
    inner = terminal or TERMINALS["respond"].build({"json": {"ok": True}}, {}, ctx)

    async def counted(req: Request) -> Response:
        calls.append(1)
        return await inner(req)

    return engine_chain([FILTERS["cors"](cfg, ctx)], counted), calls


def request(method: str = "GET", **headers: str) -> Request:
    hdrs = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request(method, "/x", "", hdrs, Body.of(b""))


def h(resp: Response, name: str) -> str | None:
    v = resp.header(name.encode())
    return None if v is None else v.decode()


async def test_preflight_is_answered_by_the_gateway() -> None:
    handler, calls = chain(CFG)
    resp = await handler(request("OPTIONS", origin="https://admin.example.com",
                                 access_control_request_method="POST",
                                 access_control_request_headers="Content-Type, Authorization"))
    assert resp.status == 204 and calls == []
    assert h(resp, "access-control-allow-origin") == "https://admin.example.com"
    assert h(resp, "access-control-allow-methods") == "GET, POST"
    assert "authorization" in h(resp, "access-control-allow-headers")
    assert h(resp, "access-control-allow-credentials") == "true"
    assert h(resp, "access-control-max-age") == "600"
    assert "Origin" in h(resp, "vary")


@pytest.mark.parametrize("origin, allowed", [
    ("https://shop.h5.example.com", True), ("http://a.b.h5.example.com", True),
    ("https://h5.example.com", False), ("https://evil-h5.example.com", False),
    ("https://admin.example.com.evil.com", False), ("http://admin.example.com", False),
])
async def test_exact_and_wildcard_origins(origin: str, allowed: bool) -> None:
    handler, _ = chain(CFG)
    resp = await handler(request(origin=origin))
    assert resp.status == 200
    assert h(resp, "access-control-allow-origin") == (origin if allowed else None)
    assert "Origin" in h(resp, "vary")


async def test_preflight_refusals_are_visible() -> None:
    handler, calls = chain(CFG)
    for hdrs in ({"origin": "https://evil.com", "access_control_request_method": "GET"},
                 {"origin": "https://admin.example.com", "access_control_request_method": "DELETE"},
                 {"origin": "https://admin.example.com", "access_control_request_method": "GET",
                  "access_control_request_headers": "X-Secret"}):
        resp = await handler(request("OPTIONS", **hdrs))
        assert resp.status == 403 and resp.error is not None
    assert calls == []


async def test_simple_request_gets_exposed_headers_and_vary() -> None:
    handler, calls = chain(CFG)
    resp = await handler(request(origin="https://admin.example.com"))
    assert calls == [1]
    assert h(resp, "access-control-expose-headers") == "X-Trace-ID"
    assert h(resp, "vary") == "Origin"


async def test_methods_default_to_the_routes() -> None:
    ctx = CompileContext(config={}, registry=Registry(), route_name="c",
                         route={"match": {"path": "/x", "methods": ["GET", "OPTIONS"]}})
    handler = engine_chain([FILTERS["cors"]({"origins": ["*"]}, ctx)],
        TERMINALS["respond"].build({"json": {}}, {}, ctx))
    resp = await handler(request("OPTIONS", origin="https://a.dev",
                                 access_control_request_method="GET"))
    assert h(resp, "access-control-allow-methods") == "GET"
    refused = await handler(request("OPTIONS", origin="https://a.dev",
                                    access_control_request_method="POST"))
    assert refused.status == 403


async def test_requests_without_origin_pass_with_vary_only() -> None:
    handler, _ = chain(CFG)
    resp = await handler(request())
    assert h(resp, "access-control-allow-origin") is None
    assert h(resp, "vary") == "Origin"


async def test_star_without_credentials_answers_star_and_any_header() -> None:
    handler, _ = chain({"origins": ["*"], "headers": ["*"]})
    resp = await handler(request("OPTIONS", origin="https://x.dev",
                                 access_control_request_method="GET",
                                 access_control_request_headers="X-Custom"))
    assert h(resp, "access-control-allow-origin") == "*"
    assert h(resp, "access-control-allow-headers") == "x-custom"
    assert h(resp, "access-control-allow-credentials") is None


async def test_gateway_errors_stay_readable_cross_origin() -> None:
    async def deny(req: Request) -> Response:
        raise HTTPError(401, "token required")

    handler, _ = chain(CFG, deny)
    resp = await handler(request(origin="https://admin.example.com"))
    assert resp.status == 401
    assert (b"access-control-allow-origin", b"https://admin.example.com") in resp.headers


@pytest.mark.parametrize("cfg", [{"origins": ["*"], "credentials": True},
                                 {"origins": ["admin.example.com"]},
                                 {"origins": ["https://a*.example.com"]}])
def test_unsafe_or_unclear_origins_are_config_errors(cfg: dict[str, Any]) -> None:
    with pytest.raises(SemanticError):
        chain(cfg)
