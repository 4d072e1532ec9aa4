"""Backends on 127.0.0.2, .3, .4 answering /who with their address, and what a test of
discovery reads from a running gateway: which target answered, and its /-/upstreams view."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.servers import LoopThread

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


class Backends:
    """One aiohttp app per (host, port), answering /who with "host:port"."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.runners: list[web.AppRunner] = []

    def serve(self, host: str, port: int) -> None:
        async def who(request: web.Request) -> web.Response:
            return web.Response(text=f"{host}:{port}")

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(float(request.query.get("s", "2")))
            return web.Response(text=f"{host}:{port}")

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/who", who)
            app.router.add_get("/slow", slow)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            return runner

        self.runners.append(self.loop.run(start()))

    def stop(self) -> None:
        for r in self.runners:
            self.loop.run(r.cleanup())
        self.loop.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def spread(gw: Any, n: int = 30) -> Counter[str]:
    """Which targets answered n requests (round robin: every target in the set)."""
    return Counter(body.partition(":")[0] for status, body in
                   (get(gw.url + "/who") for _ in range(n)) if status == 200)


def until(check: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def upstream_view(gw: Any) -> dict[str, Any]:
    with urllib.request.urlopen(gw.admin + "/-/upstreams", timeout=5) as r:
        return json.loads(r.read())["api"]
