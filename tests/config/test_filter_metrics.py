"""Black-box: the metrics a filter declares in its own module are on /metrics from the
start, under the names, labels and help the dashboard, the alert rules and
docs/OPERATIONS.md use, in one process and summed over workers."""

from __future__ import annotations

import time
from typing import Any

from tests.support.gateway import GatewayProcess

# name -> help; what operators' queries and the status page are written against
FILTER_METRICS = {
    "wxgated_ratelimit_rejected_total": "Requests refused by rate_limit.",
    "wxgated_ratelimit_degraded_total":
        "Rate-limit decisions made without the backend (on_backend_error).",
    "wxgated_cache_requests_total": "Cache lookups by route and result.",
}


def _routes(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"routes": [{"name": "home", "match": {"path": "/home"}, "filters": filters,
                        "respond": {"json": {"ok": True}}}]}


def test_filter_metrics_are_listed_before_any_request_even_without_those_filters(
        gateway: Any) -> None:
    lines = set(gateway(_routes([])).metrics().splitlines())
    for name, doc in FILTER_METRICS.items():
        assert f"# HELP {name} {doc}" in lines and f"# TYPE {name} counter" in lines, name


def test_a_compiled_route_shows_its_zero_series_with_the_documented_labels(
        gateway: Any, redis_url: str) -> None:
    state = {"backend": "redis", "redis": {"url": redis_url}}
    gw = gateway({**_routes([{"rate_limit": {"rate": 5, "per": "1m"}},
                             {"cache": {"ttl": "5s"}}]), "state": state})
    lines = set(gw.metrics().splitlines())
    assert 'wxgated_ratelimit_rejected_total{route="home"} 0.0' in lines
    for decision in ("allow", "deny"):  # a Redis store can degrade: its series exist
        assert f'wxgated_ratelimit_degraded_total{{decision="{decision}",route="home"}} 0.0' \
            in lines
    for result in ("hit", "miss", "bypass", "stale"):
        assert f'wxgated_cache_requests_total{{result="{result}",route="home"}} 0.0' in lines


def test_summed_over_workers_the_series_appear_under_the_same_names(tmp_path: Any) -> None:
    cfg = {"server": {"workers": 2},
           **_routes([{"rate_limit": {"rate": 1, "per": "1m"}}, {"cache": {"ttl": "5s"}}])}
    gw = GatewayProcess(tmp_path, cfg).start()
    try:
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = gw.metrics()
            if 'wxgated_ratelimit_rejected_total{route="home"}' in text and \
                    'wxgated_cache_requests_total{' in text:
                break
            time.sleep(0.2)
        assert 'wxgated_ratelimit_rejected_total{route="home"} 0.0' in text
        assert '# HELP wxgated_cache_requests_total Cache lookups by route and result.' in text
    finally:
        gw.stop()
