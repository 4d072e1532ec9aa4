"""The rate_limit filter compiled on its own in front of a plain terminal, as the compiler
would build it, and the request and answer helpers its tests share."""

from __future__ import annotations

import json
import uuid
from typing import Any

from wxgated.config.context import CompileContext
from wxgated.filters.rate_limit import RateLimit
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, Handler, Request, Response
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
    return chain([RateLimit(cfg, ctx)], terminal)


def rejected(route: str) -> float:
    return REGISTRY.get_sample_value("wxgated_ratelimit_rejected_total", {"route": route}) or 0.0


async def run(chain: Handler, req: Request) -> Response:
    return await chain(req)


def hdr(r: Response, name: bytes) -> bytes | None:
    return dict(r.headers).get(name)


def refused(r: Response) -> bool:
    """Answered by the gateway's own envelope (a refusal or a failure), not the terminal."""
    return r.error is not None


def passed(r: Response) -> bool:
    """Answered by the terminal: every filter let it through."""
    return r.error is None


def msg(r: Response) -> str:
    """The envelope's message."""
    return str(json.loads(r.body)["msg"])
