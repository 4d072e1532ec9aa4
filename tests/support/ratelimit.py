"""The rate_limit filter compiled on its own in front of a plain terminal, as the compiler
would build it, and the request and answer helpers its tests share."""

from __future__ import annotations

import uuid
from typing import Any

from wxgated.config.context import CompileContext
from wxgated.filters.rate_limit import RateLimit
from wxgated.http.message import Body, Handler, HTTPError, Request, Response
from wxgated.observe.metrics import REGISTRY
from wxgated.registry import Registry


async def ok(req: Request) -> Response:
    return Response(200, [(b"content-type", b"text/plain")], b"ok")


def make_req(ip: str = "10.0.0.1", headers: list[tuple[bytes, bytes]] | None = None,
             claims: dict[str, Any] | None = None) -> Request:
    req = Request("GET", "/x", "", headers or [], Body.of(b""), client_ip=ip)
    req.claims = claims
    return req


def build(cfg: dict[str, Any], *, route: str | None = None, registry: Registry | None = None,
          config: dict[str, Any] | None = None, services: dict[str, Any] | None = None,
          terminal: Handler = ok) -> Handler:
    route = route or f"r-{uuid.uuid4().hex[:8]}"
    ctx = CompileContext(config=config or {}, registry=registry or Registry(),
                         route_name=route, route={"name": route, "filters": [{"rate_limit": cfg}]},
                         services=services or {})
    return RateLimit(cfg, ctx).wrap(terminal)


def rejected(route: str) -> float:
    return REGISTRY.get_sample_value("wxgated_ratelimit_rejected_total", {"route": route}) or 0.0


async def run(chain: Handler, req: Request) -> Response | HTTPError:
    try:
        return await chain(req)
    except HTTPError as e:
        return e


def hdr(r: Response | HTTPError, name: bytes) -> bytes | None:
    return dict(r.headers).get(name)
