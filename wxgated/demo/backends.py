"""The two sample backends of `wxgated demo`: users and orders.

Why they are this small: they show what a backend behind wxgated has to do, which is
almost nothing. Neither checks a token nor talks to WeChat; each trusts the
`X-WX-OpenID` header the gateway sets after `jwt_auth` (and strips from clients).
"""

from __future__ import annotations

from aiohttp import web

OPENID = "X-WX-OpenID"

USERS: dict[str, dict[str, str]] = {
    "o-demo-alice": {"nickname": "Alice", "city": "Shenzhen", "level": "gold"},
    "o-demo-bob": {"nickname": "Bob", "city": "Hangzhou", "level": "silver"},
}

ORDERS: dict[str, list[dict[str, object]]] = {
    "o-demo-alice": [{"id": "A-1001", "item": "oolong tea", "total_fen": 3900},
                     {"id": "A-1002", "item": "mooncakes", "total_fen": 12800}],
    "o-demo-bob": [{"id": "B-2001", "item": "dumplings", "total_fen": 2600}],
}


async def healthz(request: web.Request) -> web.Response:
    """For the gateway's active health checks (shown on the status page)."""
    return web.json_response({"ok": True})


def _openid(request: web.Request) -> str:
    openid = request.headers.get(OPENID, "")
    if not openid:  # only reachable by calling the backend directly, past the gateway
        raise web.HTTPUnauthorized(text='{"error": "no X-WX-OpenID"}',
                                   content_type="application/json")
    return openid


def make_users() -> web.Application:
    """GET /users/me: the caller's openid (as the gateway said) and their record."""

    async def me(request: web.Request) -> web.Response:
        openid = _openid(request)
        return web.json_response({"openid": openid, "user": USERS.get(openid, {})})

    app = web.Application()
    app.router.add_get("/users/me", me)
    app.router.add_get("/healthz", healthz)
    return app


def make_orders() -> web.Application:
    """GET /orders: the caller's orders."""

    async def orders(request: web.Request) -> web.Response:
        openid = _openid(request)
        return web.json_response({"openid": openid, "orders": ORDERS.get(openid, [])})

    app = web.Application()
    app.router.add_get("/orders", orders)
    app.router.add_get("/healthz", healthz)
    return app
