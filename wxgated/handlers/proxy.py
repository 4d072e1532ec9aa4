"""The `upstream` terminal: stream the request to an upstream pool and the answer back."""

from __future__ import annotations

from typing import Any

from wxgated.config.spec import duration
from wxgated.handlers.base import Terminal, register_terminal
from wxgated.handlers.websocket import build_upgrader, wants_websocket
from wxgated.http.headers import request_block, response_headers
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.upstream.errors import UpstreamError, to_http_error
from wxgated.upstream.forward import forward

SCHEMA = {"type": "string", "description": "name of an upstream under `upstreams:`"}


def build(value: str, route: dict[str, Any], ctx: Any) -> Handler:
    upstream = ctx.upstreams[value]
    preserve_host = bool(route.get("preserve_host", False))
    upgrade = build_upgrader(upstream, route) if route.get("websocket", True) else None
    read_timeout = duration(route["timeout"], 0.0) if "timeout" in route else None

    async def proxy(req: Request) -> Response:
        if req.ctx.get("upgrade_buffer") is not None and wants_websocket(req):
            if upgrade is None:
                raise HTTPError(400, "websocket not allowed on this route")
            return await upgrade(req)
        lines, host = request_block(req.headers, req.peer_ip, req.client_ip, req.scheme,
                                    req.header(b"host"), req.trace_id, preserve_host)
        try:
            ex = await forward(upstream, req, req.method, req.target_uri.encode("latin-1"),
                               lines, host, req.body, read_timeout)
        except UpstreamError as exc:
            raise to_http_error(exc) from None
        conn = ex.conn
        headers = response_headers(ex.headers)
        if conn.complete:
            return Response(ex.status, headers, conn.take_body())
        return Response(ex.status, headers, stream=conn.stream_body())

    return proxy


register_terminal(Terminal("upstream", SCHEMA, build))
