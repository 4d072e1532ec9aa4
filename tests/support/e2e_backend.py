"""Black-box helpers: switchable upstream apps and small client calls to a gateway.

`Backend` is an upstream whose status, health, pace and holding the test flips from
its own thread; it counts what it really receives, so a test can see retries, breaker
refusals and ejections from the upstream's side.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp


class Backend:
    """An upstream app with switches the tests flip: its status, health and pace.

    It counts every request it really receives (per path), so a test can tell a retry,
    a breaker's refusal or an ejection from the upstream's side.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: Counter[str] = Counter()
        self.status = 200
        self.health = 200
        self.delay = 0.0
        self.holding = True  # requests to /hold wait while this is True
        self.inflight = 0
        self.server: ThreadedApp | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    def start(self) -> Backend:
        self.server = ThreadedApp(self.app(), self.port)
        self.port = self.server.port
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def app(self) -> web.Application:
        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"ok": self.health < 400}, status=self.health)

        async def anything(request: web.Request) -> web.Response:
            self.hits[request.path] += 1
            self.inflight += 1
            try:
                body = await request.read()
                if request.path == "/hold":
                    while self.holding:
                        await asyncio.sleep(0.005)
                if self.delay:
                    await asyncio.sleep(self.delay)
                return web.json_response({"name": self.name, "received": len(body)},
                                         status=self.status)
            finally:
                self.inflight -= 1

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


async def send(session: aiohttp.ClientSession, url: str, method: str = "GET",
               **kw: Any) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kw) as r:
        raw = await r.read()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
        return r.status, r.headers.copy(), doc


async def get_many(url: str, n: int, method: str = "GET", **kw: Any) -> list[tuple[int, Any, Any]]:
    """`n` requests one after another (so balancer order is deterministic)."""
    async with aiohttp.ClientSession() as s:
        return [await send(s, url, method, **kw) for _ in range(n)]


def upstream_state(gw: GatewayProcess, name: str) -> dict[str, dict[str, Any]]:
    """`/-/upstreams` for one upstream, by target URL."""
    with urllib.request.urlopen(gw.admin + "/-/upstreams", timeout=5) as r:
        doc = json.loads(r.read())
    return {t["url"]: t for t in doc[name]["targets"]}


async def wait_for(cond: Any, within: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


def healthy_gauge(gw: GatewayProcess, upstream: str, target: str) -> float | None:
    """`wxgated_upstream_target_healthy` for one target; None when the series is absent."""
    want = f'upstream="{upstream}"'
    for line in gw.metrics().splitlines():
        if line.startswith("wxgated_upstream_target_healthy{") and want in line \
                and f'target="{target}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None
