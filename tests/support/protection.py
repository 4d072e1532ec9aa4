"""The upstreams and routes of the traffic protection tests (tests/e2e/protection/): one
set of named backends per behaviour, so one test's switches never leak into another's
counts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.support.e2e_backend import Backend, send, upstream_state
from tests.support.gateway import GatewayProcess, metric_value

NAMES = ["A", "B", "C", "D", "H1", "H2", "H3", "H4", "H5", "H6", "P1", "P2", "L1", "L2",
         "R1", "R2", "F1", "F2", "S1", "S2", "S3", "CB", "CL"]
NO_PASSIVE = {"enabled": False}
FAST_CHECK = {"path": "/healthz", "interval": "100ms", "timeout": "100ms",
              "unhealthy_after": 2, "healthy_after": 2}


def urls(apps: dict[str, Backend], *names: str) -> list[dict[str, Any]]:
    return [{"url": apps[n].url} for n in names]


def upstreams(apps: dict[str, Backend], dead: str) -> dict[str, Any]:
    return {
        "wrr": {"targets": [{"url": apps["A"].url, "weight": 3}, {"url": apps["B"].url}]},
        "lc": {"targets": urls(apps, "C", "D"), "balance": "least_conn"},
        "killed": {"targets": urls(apps, "H1", "H2"), "health_check": FAST_CHECK,
                   "passive_health": {"consecutive_failures": 3, "base_ejection": "300ms"}},
        "checked": {"targets": urls(apps, "H3", "H4"), "health_check": FAST_CHECK,
                    "passive_health": NO_PASSIVE},
        "allfail": {"targets": urls(apps, "H5", "H6"), "health_check": FAST_CHECK,
                    "passive_health": NO_PASSIVE},
        "passive": {"targets": urls(apps, "P1", "P2"),
                    "passive_health": {"consecutive_failures": 3, "base_ejection": "1s"}},
        "last": {"targets": urls(apps, "L1", "L2"),
                 "passive_health": {"consecutive_failures": 2, "base_ejection": "30s"}},
        "retry": {"targets": urls(apps, "R1", "R2"), "passive_health": NO_PASSIVE,
                  "retries": {"attempts": 2, "on": ["connect_error", 502]}},
        "retry-post": {"targets": urls(apps, "R1", "R2"), "passive_health": NO_PASSIVE,
                       "retries": {"attempts": 2, "on": [502], "methods": ["GET", "POST"]}},
        "retry-dead": {"targets": [{"url": dead}, {"url": apps["R2"].url}],
                       "passive_health": NO_PASSIVE,
                       "retries": {"attempts": 2, "on": ["connect_error"]}},
        "budget": {"targets": urls(apps, "F1", "F2"), "passive_health": NO_PASSIVE,
                   "retries": {"attempts": 3, "on": [502]}},
        "pertry": {"targets": urls(apps, "S1", "S2"), "passive_health": NO_PASSIVE,
                   "retries": {"attempts": 2, "on": ["timeout"], "per_try_timeout": "200ms"}},
        "deadline": {"targets": urls(apps, "S1", "S3"), "passive_health": NO_PASSIVE,
                     "retries": {"attempts": 3, "on": ["timeout"], "per_try_timeout": "400ms",
                                 "deadline": "600ms"}},
        "cb": {"targets": urls(apps, "CB"), "passive_health": NO_PASSIVE,
               "circuit_breaker": {"window": "10s", "min_requests": 4, "failure_ratio": 0.5,
                                   "open_for": "300ms", "half_open_requests": 1}},
        "cl": {"targets": urls(apps, "CL")},
    }


def proxied(name: str, *filters: dict[str, Any]) -> dict[str, Any]:
    """`/NAME/...` proxied to upstream NAME as `/...`."""
    return {"name": name, "match": {"path": f"/{name}/*rest"},
            "filters": [*filters, {"strip_prefix": 1}], "upstream": name}


def circuit(gw: GatewayProcess, apps: dict[str, Backend]) -> tuple[str, float]:
    url = apps["CB"].url
    state = upstream_state(gw, "cb")[url]["circuit"]["state"]
    return state, metric_value(gw.metrics(), "wxgated_circuit_state", upstream="cb", target=url)


def ring_config(apps: dict[str, Backend], ring: list[str]) -> dict[str, Any]:
    return {
        "upstreams": {
            "ring": {"targets": urls(apps, *ring), "balance": "hash",
                     "hash_key": "header.X-User"},
            "keep": {"targets": urls(apps, "K"), "passive_health": NO_PASSIVE,
                     "circuit_breaker": {"min_requests": 2, "failure_ratio": 0.5,
                                         "open_for": "30s"}},
        },
        "routes": [proxied("ring"), proxied("keep"),
                   {"name": "keep-limited", "match": {"path": "/keep-limited"},
                    "filters": [{"rate_limit": {"rate": 2, "per": "1m"}}],
                    "respond": {"json": {"ok": True}}}],
    }


async def owners(gw: GatewayProcess, keys: list[str]) -> dict[str, str]:
    """Which target answered each key (20 requests at a time)."""
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        for i in range(0, len(keys), 20):
            batch = keys[i:i + 20]
            got = await asyncio.gather(*(send(s, gw.url + "/ring/h", headers={"X-User": k})
                                         for k in batch))
            for k, (status, _, doc) in zip(batch, got, strict=True):
                assert status == 200
                out[k] = doc["name"]
    return out
