"""The `upstream` terminal: stream the request to an upstream pool and the answer back."""

from __future__ import annotations

from typing import Any

from wxgated.config.spec import duration
from wxgated.handlers.base import Terminal, register_terminal
from wxgated.handlers.fastproxy import FastProxy, client_response
from wxgated.handlers.websocket import build_upgrader, wants_websocket
from wxgated.http.errors import UpstreamError, to_http_error
from wxgated.http.headers import forward_target, request_block
from wxgated.http.message import HTTPError, Request, Response, SyncCheck
from wxgated.upstream.forward import forward
from wxgated.upstream.pool import Upstream

SCHEMA = {"type": "string", "description": "name of an upstream under `upstreams:`"}


class Proxy:
    """One route's proxy handler, everything per-route resolved at compile time."""

    def __init__(self, upstream: Upstream, route: dict[str, Any]) -> None:
        self.upstream = upstream
        self.preserve_host = bool(route.get("preserve_host", False))
        self.upgrade = build_upgrader(upstream, route) if route.get("websocket", True) else None
        self.read_timeout = duration(route["timeout"], 0.0) if "timeout" in route else None

    async def __call__(self, req: Request) -> Response:
        if req.ctx.get("upgrade_buffer") is not None and wants_websocket(req):
            if self.upgrade is None:
                raise HTTPError(400, "websocket not allowed on this route")
            return await self.upgrade(req)
        lines, host = request_block(req, self.preserve_host)
        try:
            ex = await forward(self.upstream, req, req.method,
                               forward_target(req), lines, host, req.body,
                               self.read_timeout)
        except UpstreamError as exc:
            raise to_http_error(exc) from None
        return client_response(ex.status, ex.headers, ex.conn)

    def fast_path(self, checks: tuple[SyncCheck, ...]) -> FastProxy:
        return FastProxy(self.upstream, checks, self.preserve_host, self.read_timeout)


def build(value: str, route: dict[str, Any], ctx: Any) -> Proxy:
    return Proxy(ctx.upstreams[value], route)


register_terminal(Terminal("upstream", SCHEMA, build))
