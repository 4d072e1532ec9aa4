"""Prometheus metrics (DESIGN.md, metrics contract).

All metrics live in one CollectorRegistry, `REGISTRY`, exposed on the admin listener.
Label children are resolved once per route/upstream (see `RouteMetrics`), never per
request: prometheus_client's `labels()` lookup is measurable on the hot path.
Modules that own a metric define it here so the names stay in one place.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "wxgated_requests_total", "Requests answered, by route, method and status.",
    ["route", "method", "status"], registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "wxgated_request_duration_seconds", "Time from request head to response end.",
    ["route", "method"], buckets=_BUCKETS, registry=REGISTRY,
)
UPSTREAM_REQUESTS = Counter(
    "wxgated_upstream_requests_total", "Requests sent to upstream targets.",
    ["upstream", "target", "status"], registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "wxgated_upstream_duration_seconds", "Time until the upstream's response head.",
    ["upstream"], buckets=_BUCKETS, registry=REGISTRY,
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
RATELIMIT_REJECTED = Counter(
    "wxgated_ratelimit_rejected_total", "Requests refused by rate_limit.",
    ["route"], registry=REGISTRY,
)
RATELIMIT_DEGRADED = Counter(
    "wxgated_ratelimit_degraded_total",
    "Rate-limit decisions made without the backend (on_backend_error).",
    ["route", "decision"], registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "wxgated_config_reloads_total", "Config reloads by result.", ["result"], registry=REGISTRY,
)
WECHAT_API_REQUESTS = Counter(
    "wxgated_wechat_api_requests_total", "Calls to the WeChat API by api and errcode.",
    ["api", "errcode"], registry=REGISTRY,
)
CACHE_REQUESTS = Counter(
    "wxgated_cache_requests_total", "Cache lookups by route and result.",
    ["route", "result"], registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "wxgated_websockets_open", "Open proxied WebSocket connections.", ["route"],
    registry=REGISTRY, multiprocess_mode="livesum",
)


class RouteMetrics:
    """Per-route children, resolved lazily per (method, status) and then reused."""

    __slots__ = ("route", "_count", "_dur")

    def __init__(self, route: str) -> None:
        self.route = route
        self._count: dict[tuple[str, int], Counter] = {}
        self._dur: dict[str, Histogram] = {}

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method, status)
        c = self._count.get(key)
        if c is None:
            c = self._count[key] = REQUESTS.labels(self.route, method, str(status))
        c.inc()
        h = self._dur.get(method)
        if h is None:
            h = self._dur[method] = REQUEST_DURATION.labels(self.route, method)
        h.observe(seconds)
