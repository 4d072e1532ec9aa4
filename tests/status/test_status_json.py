"""/-/status.json (the status page's data contract) and the math behind it."""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import ThreadedApp
from tests.support.status_harness import ENV, Traffic, backend, config
from wxgated.observe.rates import quantile, route_delta
from wxgated.observe.ring import BOUNDS, RouteTotals, Sample, StatusRing


def test_quantile_interpolates_inside_the_bucket() -> None:
    counts = [0.0] * len(BOUNDS)
    i = BOUNDS.index(0.01)
    for j in range(i, len(BOUNDS)):
        counts[j] = 100.0  # all 100 observations in (0.005, 0.01]
    assert quantile(0.5, counts) == pytest.approx(0.0075)
    assert quantile(0.99, counts) == pytest.approx(0.00995)
    assert quantile(0.5, [0.0] * len(BOUNDS)) is None
    inf_only = [0.0] * (len(BOUNDS) - 1) + [3.0]
    assert quantile(0.5, inf_only) == 10.0  # the highest finite bound, as Prometheus


def totals(requests: float, errors: float, rejected: float = 0.0) -> RouteTotals:
    return RouteTotals(requests, errors, rejected, [requests] * len(BOUNDS))


def test_route_delta_is_a_rate_over_the_pair() -> None:
    old = Sample(100.0, {"r": totals(10, 0)}, {}, {})
    new = Sample(110.0, {"r": totals(60, 5, 4)}, {}, {})
    d = route_delta(old, new, "r")
    assert d["rps"] == 5.0 and d["error_rate"] == 0.1 and d["rejected_per_s"] == 0.4
    assert d["p50_ms"] is not None and d["p50_ms"] <= 1.0
    idle = route_delta(new, new, "missing")
    assert idle["rps"] == 0.0 and idle["error_rate"] is None and idle["p99_ms"] is None


def test_ring_window_picks_the_oldest_sample_inside_it() -> None:
    ring = StatusRing(lambda: [], interval=5)
    assert ring.window(60) is None
    for t in range(0, 200, 5):
        ring.take(now=float(t))
    old, new = ring.window(60) or (None, None)
    assert new is not None and old is not None and new.at == 195.0 and old.at == 135.0
    assert len(ring.samples) <= 300 / 5 + 1


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[ThreadedApp, ThreadedApp]]:
    users, orders = backend("users"), backend("orders")
    yield users, orders
    users.stop()
    orders.stop()


def status(gw: Any) -> dict[str, Any]:
    with urllib.request.urlopen(gw.admin + "/-/status.json", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return dict(json.loads(r.read()))


def wait_for(gw: Any, check: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = status(gw)
        if check(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.3)


def test_status_json_reports_routes_upstreams_config_workers(
        gateway: Any, backends: tuple[ThreadedApp, ThreadedApp]) -> None:
    users, orders = backends
    gw = gateway(config(users.url, orders.url), env=ENV)
    traffic = Traffic(gw.url)
    try:
        s = wait_for(gw, lambda s: s["totals"]["rps"] > 0 and unhealthy(s) and rejected(s))
    finally:
        traffic.stop()
    names = [r["name"] for r in s["routes"]]
    assert names[:3] == ["ping", "users", "orders"] and "" in names  # "" = no route matched
    ping = s["routes"][0]
    assert ping["rps"] > 0 and ping["error_rate"] == 0 and ping["requests"] > 0
    assert ping["p50_ms"] is not None and ping["p99_ms"] >= ping["p50_ms"]
    assert ping["path"] == "/ping" and isinstance(ping["history"], list)
    assert rejected(s), "the orders rate limit refuses part of the traffic"
    up = {u["name"]: u for u in s["upstreams"]}
    live, down = up["users"]["targets"]
    assert live["healthy"] is True and live["breaker"] == "closed" and live["url"] == users.url
    assert down["healthy"] is False and down["available"] is False
    assert isinstance(live["active"], int) and isinstance(live["idle"], int)
    assert up["orders"]["targets"][0]["breaker"] is None  # no breaker configured
    assert s["config"]["version"] == 1 and len(s["config"]["sha256"]) == 64
    assert s["config"]["last_reload"] is None
    assert s["workers"]["configured"] == 1 and s["workers"]["serving"] == 1
    assert s["ready"] is True and s["interval_s"] == 1.0
    assert 0 < s["window_s"] <= 61 and not math.isnan(s["totals"]["rps"])


def unhealthy(s: dict[str, Any]) -> bool:
    return any(t["healthy"] is False for u in s["upstreams"] for t in u["targets"])


def rejected(s: dict[str, Any]) -> bool:
    return any(r["name"] == "orders" and r["rejected"] > 0 for r in s["routes"])


def test_status_records_the_last_reload(gateway: Any,
                                        backends: tuple[ThreadedApp, ThreadedApp]) -> None:
    users, orders = backends
    cfg = config(users.url, orders.url)
    gw = gateway(cfg, env=ENV)
    first = status(gw)["config"]
    gw.write("routes: [not valid")
    s = wait_for(gw, lambda s: s["config"]["last_reload"] is not None)
    assert s["config"]["last_reload"]["result"] == "failure"
    assert s["config"]["last_reload"]["at"] > time.time() - 60
    assert s["config"]["sha256"] == first["sha256"]  # the last good config still serves
    extra = {"name": "extra", "match": {"path": "/extra"}, "respond": {"json": {}}}
    gw.write({**cfg, "routes": [*cfg["routes"], extra]})
    s = wait_for(gw, lambda s: s["config"]["sha256"] != first["sha256"])
    assert s["config"]["last_reload"]["result"] == "success"
    assert s["config"]["loaded_at"] > first["loaded_at"] and s["config"]["routes"] == 4
    assert "extra" in [r["name"] for r in s["routes"]]


def test_root_redirects_to_the_page(gateway: Any,
                                    backends: tuple[ThreadedApp, ThreadedApp]) -> None:
    users, orders = backends
    gw = gateway(config(users.url, orders.url))
    with urllib.request.urlopen(gw.admin + "/", timeout=5) as r:
        assert r.url.endswith("/-/status") and r.headers["Content-Type"].startswith("text/html")
        body = r.read().decode()
    assert "status.json" in body and "<script" in body
    assert "http://" not in body and "https://" not in body  # nothing from a CDN


def test_supervisor_sums_the_workers(gateway: Any,
                                     backends: tuple[ThreadedApp, ThreadedApp]) -> None:
    """server.workers: 2: the supervisor's page sums both workers and takes target
    health from their gauges; in-flight and idle connections are per worker: null."""
    users, orders = backends
    cfg = {**config(users.url, orders.url), "server": {"workers": 2}}
    gw = gateway(cfg, env={**ENV, "WXGATED_METRICS_INTERVAL": "0.2"})
    traffic = Traffic(gw.url)
    try:
        s = wait_for(gw, lambda s: s["totals"]["rps"] > 0 and unhealthy(s), timeout=25)
    finally:
        traffic.stop()
    assert s["workers"]["configured"] == 2 and s["workers"]["serving"] == 2
    assert len(s["workers"]["pids"]) == 2 and gw.proc.pid not in s["workers"]["pids"]
    ping = next(r for r in s["routes"] if r["name"] == "ping")
    assert ping["rps"] > 0 and ping["requests"] > 0
    live, down = next(u for u in s["upstreams"] if u["name"] == "users")["targets"]
    assert live["healthy"] is True and down["healthy"] is False
    assert live["active"] is None and live["idle"] is None


def test_the_page_ships_as_package_data() -> None:
    from importlib.resources import files

    assert files("wxgated").joinpath("status.html").is_file()
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"status.html"' in text.split("[tool.setuptools.package-data]")[1]
