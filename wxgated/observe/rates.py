"""Rates and percentiles from two ring samples (observe.ring), for the status page.

The percentile is Prometheus' `histogram_quantile`: linear interpolation inside the
bucket the rank falls in, so the page and a Grafana panel over the same buckets agree.
"""

from __future__ import annotations

import math
from typing import Any

from wxgated.observe.ring import BOUNDS, RouteTotals, Sample

_EMPTY = RouteTotals()


def quantile(q: float, cumulative: list[float]) -> float | None:
    """The q-quantile (seconds) of cumulative bucket counts over BOUNDS; None when empty.
    A rank in the +Inf bucket answers the highest finite bound, as Prometheus does."""
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0.0, 0.0
    for bound, count in zip(BOUNDS, cumulative, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        below, lower = count, bound
    return lower


def route_delta(old: Sample, new: Sample, route: str) -> dict[str, Any]:
    """req/s, error rate, p50/p99 (ms) and rate-limit rejections/s between two samples."""
    a = old.routes.get(route, _EMPTY)
    b = new.routes.get(route, _EMPTY)
    seconds = max(new.at - old.at, 1e-9)
    requests = max(b.requests - a.requests, 0.0)  # a counter reset reads as no traffic
    errors = max(b.errors - a.errors, 0.0)
    buckets = [max(y - x, 0.0) for x, y in zip(a.buckets, b.buckets, strict=True)]
    return {
        "rps": round(requests / seconds, 3),
        "error_rate": round(errors / requests, 4) if requests else None,
        "p50_ms": _ms(quantile(0.5, buckets)),
        "p99_ms": _ms(quantile(0.99, buckets)),
        "rejected_per_s": round(max(b.rejected - a.rejected, 0.0) / seconds, 3),
    }


def history(samples: list[Sample], route: str, points: int = 60) -> list[float]:
    """req/s between consecutive samples, oldest first (the page's sparkline)."""
    tail = samples[-(points + 1):]
    out = []
    for a, b in zip(tail, tail[1:], strict=False):
        ra, rb = a.routes.get(route, _EMPTY), b.routes.get(route, _EMPTY)
        out.append(round(max(rb.requests - ra.requests, 0.0) / max(b.at - a.at, 1e-9), 3))
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
