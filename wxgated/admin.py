"""The admin listener (aiohttp, loopback by default): metrics, health, introspection.

Never served on the public listener. With several workers the supervisor runs it and
`/metrics` sums the workers (observe.multiproc).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wxgated.observe.metrics import REGISTRY, flush

if TYPE_CHECKING:
    from wxgated.status import StatusPage


def _local_metrics() -> bytes:
    flush()
    return generate_latest(REGISTRY)


class Admin:
    def __init__(self, snapshot: Callable[[], Any], ready: Callable[[], bool],
                 metrics: Callable[[], bytes] | None = None,
                 status: StatusPage | None = None) -> None:
        self.snapshot = snapshot
        self.status = status
        self.ready = ready
        self.metrics = metrics or _local_metrics
        self.started = time.time()
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.get_metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/-/config", self.config)
        app.router.add_get("/-/routes", self.routes)
        app.router.add_get("/-/upstreams", self.upstreams)
        app.router.add_get("/-/wechat/access_token", self.access_token)
        if self.status is not None:
            self.status.add_routes(app)
        return app

    async def start(self, listen: str) -> None:
        from wxgated.process.workerproc import parse_listen

        host, port = parse_listen(listen)
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        if self.status is not None:
            self.status.start()

    async def close(self) -> None:
        if self.status is not None:
            await self.status.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(time.time() - self.started)})

    async def readyz(self, request: web.Request) -> web.Response:
        ok = self.ready() and self.snapshot() is not None
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot().describe())

    async def routes(self, request: web.Request) -> web.Response:
        return web.json_response([route_info(r) for r in self.snapshot().routes])

    async def upstreams(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        return web.json_response({name: upstream_info(u, now)
                                  for name, u in self.snapshot().upstreams.items()})

    async def access_token(self, request: web.Request) -> web.Response:
        services = self.snapshot().services
        tokens = services.get("tokens")
        if tokens is None:
            return web.json_response({"error": "wechat is not configured"}, status=404)
        name = request.query.get("app")
        if name is not None:  # ?app=NAME: one of several wechat.apps (default: the first)
            app = services["wechat_apps"].by_name.get(name)
            if app is None:
                return web.json_response({"error": "no such app"}, status=404)
            tokens = app.tokens
        from wxgated.wechat.client import WeChatError

        try:
            token, expires_in = await tokens.current()
        except WeChatError as err:  # WeChat down or refusing: say so, no 500 + traceback
            return web.json_response(
                {"error": "WeChat did not hand out an access_token", "errcode": err.errcode},
                status=503, headers={"Retry-After": "1"})
        return web.json_response({"access_token": token, "expires_in": expires_in})


def route_info(r: Any) -> dict[str, Any]:
    return {"name": r.name, "path": r.path, "methods": list(r.methods) or ["*"],
            "host": r.host, "filters": list(r.filters), "terminal": r.terminal}


def upstream_info(u: Any, now: float) -> dict[str, Any]:
    targets: list[dict[str, Any]] = []
    for t in u.targets:
        info: dict[str, Any] = {"url": t.key, "weight": t.weight, "active": t.active,
                                "available": t.available,
                                "idle_connections": len(t.pool.idle)}
        if t.breaker is not None:
            info["circuit"] = t.breaker.snapshot(now)
        if t.health is not None:
            info["health"] = t.health.snapshot(now)
        targets.append(info)
    info = {"balance": type(u.balancer).__name__, "source": "static", "targets": targets}
    watcher = getattr(u, "watcher", None)
    if watcher is not None:  # discovered: where the targets came from, and how fresh
        info["source"] = watcher.provider.kind
        info["discovery"] = watcher.describe()
    return info
