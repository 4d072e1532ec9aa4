"""A small ring of per-route totals, sampled every few seconds for the status page.

Why a ring and not new per-request counters: the gateway already counts every request
(observe.metrics); rates and percentiles over the last minutes are differences between
two readings of those same counters and histogram buckets. Reading them every few
seconds costs one registry walk per interval and nothing per request.

A sample holds cumulative totals; `window()` picks the newest sample and the oldest one
inside the window, and observe.rates turns the pair into req/s, error rate, p50/p99.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wxgated.observe.metrics import BUCKETS

log = logging.getLogger(__name__)

INTERVAL_ENV = "WXGATED_STATUS_INTERVAL"  # seconds between samples (tests use 1)
KEEP_SECONDS = 300.0  # how far back the ring reaches (the sparklines)
BOUNDS: tuple[float, ...] = BUCKETS + (math.inf,)
_INDEX = {b: i for i, b in enumerate(BOUNDS)}


@dataclass
class RouteTotals:
    """Cumulative counts of one route (summed over methods, statuses and workers)."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers
    rejected: float = 0.0  # refused by rate_limit
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BOUNDS))  # cumulative


@dataclass
class Sample:
    at: float  # time.monotonic() of the reading
    routes: dict[str, RouteTotals]
    healthy: dict[tuple[str, str], float]  # (upstream, target) -> wxgated_upstream_target_healthy
    circuit: dict[tuple[str, str], float]  # (upstream, target) -> wxgated_circuit_state


def read_sample(families: Iterable[Any], at: float) -> Sample:
    """One Sample from prometheus metric families (a registry's or the workers' sum)."""
    s = Sample(at, {}, {}, {})
    for family in families:
        for m in family.samples:
            _add(s, m.name, m.labels, m.value)
    return s


def _add(s: Sample, name: str, labels: dict[str, str], value: float) -> None:
    if name == "wxgated_requests_total":
        r = _route(s, labels)
        r.requests += value
        if labels.get("status", "").startswith("5"):
            r.errors += value
    elif name == "wxgated_request_duration_seconds_bucket":
        i = _INDEX.get(float(labels.get("le", "nan")))
        if i is not None:
            _route(s, labels).buckets[i] += value
    elif name == "wxgated_ratelimit_rejected_total":
        _route(s, labels).rejected += value
    elif name == "wxgated_upstream_target_healthy":
        s.healthy[(labels["upstream"], labels["target"])] = value
    elif name == "wxgated_circuit_state":
        s.circuit[(labels["upstream"], labels["target"])] = value


def _route(s: Sample, labels: dict[str, str]) -> RouteTotals:
    name = labels.get("route", "")
    r = s.routes.get(name)
    if r is None:
        r = s.routes[name] = RouteTotals()
    return r


def default_interval() -> float:
    """Seconds between samples: WXGATED_STATUS_INTERVAL, else 5."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, "5"))
    except ValueError:
        value = 5.0
    return value if value > 0 else 5.0


class StatusRing:
    """The last KEEP_SECONDS of samples, taken every `interval` by `run()`."""

    def __init__(self, families: Callable[[], Iterable[Any]],
                 interval: float | None = None) -> None:
        self.families = families
        self.interval = interval or default_interval()
        self.samples: deque[Sample] = deque(maxlen=int(KEEP_SECONDS / self.interval) + 1)

    def take(self, now: float | None = None) -> Sample:
        """Read the counters now and keep the reading."""
        sample = read_sample(self.families(), time.monotonic() if now is None else now)
        self.samples.append(sample)
        return sample

    def window(self, seconds: float) -> tuple[Sample, Sample] | None:
        """(oldest sample within `seconds` of the newest, newest); None before two exist."""
        if len(self.samples) < 2:
            return None
        newest = self.samples[-1]
        for old in self.samples:
            if old is not newest and newest.at - old.at <= seconds + self.interval / 2:
                return old, newest
        return self.samples[-2], newest

    async def run(self) -> None:
        """Sample forever (cancel to stop); a failed reading is logged, not fatal."""
        while True:
            try:
                self.take()
            except Exception:  # noqa: BLE001 - the status page must not take down admin
                log.exception("status sample failed")
            await asyncio.sleep(self.interval)
