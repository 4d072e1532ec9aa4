"""Prometheus metrics (docs/OPERATIONS.md, Metrics).

All metrics live in one CollectorRegistry, `REGISTRY`, exposed on the admin listener.
Label children are resolved once per route/upstream (see `RouteMetrics`), never per
request: prometheus_client's `labels()` lookup is measurable on the hot path.
Metrics shared by several modules, or owned by a core part (the server, upstreams,
discovery, the process), are defined here. A metric only one filter counts is defined in
that filter's module, in this same registry: the filters package imports every filter
module, so those families exist (and /metrics lists them) once any config is compiled.

The per-request metrics go one step further: `LocalCounter` / `LocalHistogram` count in
plain ints on the event-loop thread and `flush()` adds the totals to the prometheus
children before every scrape and twice a second (for the multi-worker snapshots).
prometheus_client takes a lock on every inc/observe; at ~6 per proxied request that
was a measurable share of the CPU (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "wxgated_requests_total", "Requests answered, by route, method and status.",
    ["route", "method", "status"], registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "wxgated_request_duration_seconds", "Time from request head to response end.",
    ["route", "method"], buckets=BUCKETS, registry=REGISTRY,
)
UPSTREAM_REQUESTS = Counter(
    "wxgated_upstream_requests_total", "Requests sent to upstream targets.",
    ["upstream", "target", "status"], registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "wxgated_upstream_duration_seconds", "Time until the upstream's response head.",
    ["upstream"], buckets=BUCKETS, registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "wxgated_requests_in_flight", "Requests being handled.", registry=REGISTRY,
    multiprocess_mode="livesum",
)
CIRCUIT_STATE = Gauge(
    "wxgated_circuit_state", "Breaker state per target: 0 closed, 1 half-open, 2 open.",
    ["upstream", "target"], registry=REGISTRY, multiprocess_mode="max",
)
TARGET_HEALTHY = Gauge(
    "wxgated_upstream_target_healthy", "1 when the target takes traffic, 0 when ejected.",
    ["upstream", "target"], registry=REGISTRY, multiprocess_mode="min",
)
DISCOVERY_REFRESHES = Counter(
    "wxgated_discovery_refresh_total",
    "Service-discovery refreshes by upstream, provider and result (ok, empty, error).",
    ["upstream", "provider", "result"], registry=REGISTRY,
)
UPSTREAM_TARGETS = Gauge(
    "wxgated_upstream_targets", "Targets an upstream currently balances over.",
    ["upstream"], registry=REGISTRY, multiprocess_mode="max",
)
CONFIG_RELOADS = Counter(
    "wxgated_config_reloads_total", "Config reloads by result.", ["result"], registry=REGISTRY,
)
WECHAT_API_REQUESTS = Counter(
    "wxgated_wechat_api_requests_total",
    "Calls to the WeChat API by api, errcode and app (a wechat.apps name).",
    ["api", "errcode", "app"], registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "wxgated_websockets_open", "Open proxied WebSocket connections.", ["route"],
    registry=REGISTRY, multiprocess_mode="livesum",
)

WORKERS_CONFIGURED = Gauge(
    "wxgated_workers_configured", "Worker processes configured (server.workers; 1: one process).",
    registry=REGISTRY, multiprocess_mode="max",
)
WORKERS_SERVING = Gauge(
    "wxgated_workers_serving", "Worker processes that reported ready and are alive.",
    registry=REGISTRY, multiprocess_mode="max",
)


_LOCAL: dict[tuple[str, tuple[str, ...]], Any] = {}  # (metric, labels) -> local, for flush()
_GAUGE_SOURCES: list[Any] = []  # callables feeding IN_FLIGHT at flush time


class LocalCounter:
    """A counter child's increments, kept in an int until the next flush."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0

    def inc(self) -> None:
        self.n += 1

    def flush(self) -> None:
        if self.n:
            n, self.n = self.n, 0
            self.child.inc(n)


class LocalHistogram:
    """A histogram child's observations, bucketed locally until the next flush."""

    __slots__ = ("child", "bounds", "counts", "total", "dirty")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds + (float("inf"),)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.dirty = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        # the same per-bucket (non-cumulative) counts prometheus_client keeps itself
        buckets = self.child._buckets
        for i, c in enumerate(self.counts):
            if c:
                buckets[i].inc(c)
                self.counts[i] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


def in_flight_source(fn: Any) -> None:
    """Register a callable returning this process's in-flight request count."""
    _GAUGE_SOURCES.append(fn)


def flush() -> None:
    """Move locally counted values into the prometheus registry (loop thread only)."""
    for m in _LOCAL.values():
        m.flush()
    if _GAUGE_SOURCES:
        IN_FLIGHT.set(sum(fn() for fn in _GAUGE_SOURCES))


def local_counter(metric: Counter, *labels: str) -> LocalCounter:
    """The one LocalCounter for these labels (reused across reloads)."""
    key = (metric._name, labels)
    local = _LOCAL.get(key)
    if local is None:
        local = _LOCAL[key] = LocalCounter(metric.labels(*labels))
    return local


def local_histogram(metric: Histogram, *labels: str) -> LocalHistogram:
    key = (metric._name, labels)
    local = _LOCAL.get(key)
    if local is None:
        local = _LOCAL[key] = LocalHistogram(metric.labels(*labels), BUCKETS)
    return local


class RouteMetrics:
    """Per-route children, resolved lazily per (method, status) and then reused."""

    __slots__ = ("route", "_count", "_dur")

    def __init__(self, route: str) -> None:
        self.route = route
        self._count: dict[tuple[str, int], LocalCounter] = {}
        self._dur: dict[str, LocalHistogram] = {}

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method, status)
        c = self._count.get(key)
        if c is None:
            c = self._count[key] = local_counter(REQUESTS, self.route, method, str(status))
        c.n += 1
        h = self._dur.get(method)
        if h is None:
            h = self._dur[method] = local_histogram(REQUEST_DURATION, self.route, method)
        h.observe(seconds)
