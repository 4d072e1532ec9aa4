"""The status page on the admin listener: `/-/status` (HTML) and `/-/status.json`.

The JSON is the contract (docs/OPERATIONS.md, Status page); the page (status.html,
package data, no CDN) only renders it and fetches it again every 2 s. Route figures come
from the ring of counter readings (observe.ring), so the page adds no per-request work.

With several workers the supervisor serves this: route figures are the workers' sum,
and target health/breaker state come from the summed gauges (min healthy, max breaker
state), because the supervisor's own upstream objects carry no traffic. In-flight and
idle connections live in each worker and are then reported as null.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from aiohttp import web

from wxgated import __version__
from wxgated.background import Background
from wxgated.observe.rates import history, route_delta
from wxgated.observe.ring import Sample, StatusRing

WINDOW_SECONDS = 60.0  # the "last minute" the route figures cover
_BREAKER = {0.0: "closed", 1.0: "half_open", 2.0: "open"}


@dataclass
class StatusSources:
    """What the page reads, as callables so it always sees the live config."""

    snapshot: Callable[[], Any]
    ready: Callable[[], bool]
    workers: Callable[[], dict[str, Any]]
    last_reload: Callable[[], dict[str, Any] | None]
    aggregated: bool = False  # True in the supervisor (see module docstring)


class StatusPage:
    """Serves the page and its JSON; owns the sampling task of its ring."""

    def __init__(self, sources: StatusSources, ring: StatusRing) -> None:
        self.sources = sources
        self.ring = ring
        self.started = time.time()
        self._sampling = Background()
        self._html: bytes | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get("/-/status", self.page)
        app.router.add_get("/-/status.json", self.data)

    def start(self) -> None:
        """Start sampling (on the admin's event loop)."""
        self._sampling.start(self.ring.run, "status:sampling")

    async def close(self) -> None:
        await self._sampling.aclose()

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/-/status")

    async def page(self, request: web.Request) -> web.Response:
        if self._html is None:
            self._html = files("wxgated").joinpath("status.html").read_bytes()
        return web.Response(body=self._html, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def data(self, request: web.Request) -> web.Response:
        return web.json_response(self.build(), headers={"Cache-Control": "no-store"})

    def build(self) -> dict[str, Any]:
        """The whole `/-/status.json` document."""
        snap = self.sources.snapshot()
        pair = self.ring.window(WINDOW_SECONDS)
        samples = list(self.ring.samples)
        routes = [route_entry(r.name, r, pair, samples) for r in snap.routes]
        if pair is not None and "" in pair[1].routes:  # requests no route matched (404s)
            routes.append(route_entry("", None, pair, samples))
        newest = samples[-1] if samples else None
        return {
            "version": __version__,
            "generated_at": round(time.time(), 3),
            "uptime_s": round(time.time() - self.started),
            "ready": bool(self.sources.ready()),
            "window_s": round(pair[1].at - pair[0].at, 1) if pair else None,
            "interval_s": self.ring.interval,
            "config": config_entry(snap, self.sources.last_reload()),
            "workers": self.sources.workers(),
            "totals": totals(routes),
            "routes": routes,
            "upstreams": [upstream_entry(name, u, newest, self.sources.aggregated)
                          for name, u in snap.upstreams.items()],
        }


def route_entry(name: str, route: Any, pair: tuple[Sample, Sample] | None,
                samples: list[Sample]) -> dict[str, Any]:
    """One route's row: what it matches, and its figures over the window (null before
    the ring has two samples)."""
    entry: dict[str, Any] = {"name": name, "path": None, "methods": [], "terminal": None}
    if route is not None:
        entry.update(path=route.path, methods=list(route.methods) or ["*"],
                     terminal=route.terminal)
    if pair is None:
        entry.update(rps=None, error_rate=None, p50_ms=None, p99_ms=None,
                     rejected_per_s=None, requests=0, rejected=0, history=[])
        return entry
    entry.update(route_delta(pair[0], pair[1], name))
    newest = pair[1].routes.get(name)
    entry["requests"] = int(newest.requests) if newest else 0
    entry["rejected"] = int(newest.rejected) if newest else 0
    entry["history"] = history(samples, name)
    return entry


def totals(routes: list[dict[str, Any]]) -> dict[str, Any]:
    """Gateway-wide req/s, error rate and rate-limit rejections/s over the window."""
    rps = sum(r["rps"] or 0.0 for r in routes)
    errors = sum((r["rps"] or 0.0) * (r["error_rate"] or 0.0) for r in routes)
    return {"rps": round(rps, 3), "error_rate": round(errors / rps, 4) if rps else None,
            "rejected_per_s": round(sum(r["rejected_per_s"] or 0.0 for r in routes), 3),
            "rejected": sum(r["rejected"] for r in routes)}


def config_entry(snap: Any, last_reload: dict[str, Any] | None) -> dict[str, Any]:
    """Which config serves, and how the last reload went (null: none since start)."""
    return {"version": snap.version, "sha256": snap.sha256, "source": snap.source,
            "loaded_at": snap.loaded_at, "routes": len(snap.routes),
            "last_reload": last_reload}


def upstream_entry(name: str, upstream: Any, newest: Sample | None,
                   aggregated: bool) -> dict[str, Any]:
    now = time.monotonic()
    watcher = getattr(upstream, "watcher", None)
    return {"name": name, "balance": type(upstream.balancer).__name__,
            "source": "static" if watcher is None else watcher.provider.kind,
            "targets": [target_entry(name, t, now, newest if aggregated else None)
                        for t in upstream.targets]}


def target_entry(upstream: str, t: Any, now: float, summed: Sample | None) -> dict[str, Any]:
    """healthy: null when no health check watches the target; breaker: null without a
    circuit breaker. `summed` (the supervisor) takes both from the workers' gauges."""
    healthy = None if t.health is None else bool(t.health.healthy(now))
    breaker = None if t.breaker is None else t.breaker.snapshot(now)["state"]
    active: int | None = t.active
    idle: int | None = len(t.pool.idle)
    if summed is not None:
        key = (upstream, t.key)
        if t.health is not None and key in summed.healthy:
            healthy = summed.healthy[key] >= 1
        if t.breaker is not None and key in summed.circuit:
            breaker = _BREAKER.get(summed.circuit[key], "open")
        active = idle = None
    available = (healthy is not False) and breaker != "open"
    return {"url": t.key, "weight": t.weight, "healthy": healthy, "breaker": breaker,
            "available": available, "active": active, "idle": idle}


def status_page(gw: Any, ready: Callable[[], bool], workers: Callable[[], dict[str, Any]],
                aggregated: bool = False) -> StatusPage:
    """The page for a Gateway `gw` (run.py): one process, or the supervisor's copy."""
    from wxgated.observe.multiproc import collect_families

    sources = StatusSources(snapshot=lambda: gw.snapshot, ready=ready, workers=workers,
                            last_reload=lambda: gw.last_reload, aggregated=aggregated)
    return StatusPage(sources, StatusRing(collect_families))


def single_worker() -> dict[str, Any]:
    """`workers` for one process serving everything itself."""
    import os

    return {"configured": 1, "serving": 1, "pids": [os.getpid()]}
