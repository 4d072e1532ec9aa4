"""Black-box: rate limits through running `wxgated run` processes, over HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.gateway import metric_value
from tests.support.redisproc import start_redis
from tests.support.servers import free_port


def config(limit: dict[str, Any], state: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "routes": [{
            "name": "limited",
            "match": {"path": "/limited", "methods": ["GET"]},
            "filters": [{"rate_limit": limit}],
            "respond": {"status": 200, "json": {"ok": True}},
        }],
    }
    if state:
        cfg["state"] = state
    return cfg


async def get_all(urls: list[str]) -> list[tuple[int, Any, dict[str, Any]]]:
    async with aiohttp.ClientSession() as s:
        async def one(url: str) -> tuple[int, Any, dict[str, Any]]:
            async with s.get(url) as r:
                return r.status, r.headers.copy(), await r.json(content_type=None)

        return await asyncio.gather(*(one(u) for u in urls))


async def test_local_limit_over_http_exactly_n_then_429(gateway: Any) -> None:
    gw = gateway(config({"rate": 5, "per": "1m"}))
    results = await get_all([gw.url + "/limited"] * 20)
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert len(ok) == 5 and len(refused) == 15
    status, headers, body = refused[0]
    assert headers["Retry-After"] == "12"
    assert headers["RateLimit-Limit"] == "5" and headers["RateLimit-Remaining"] == "0"
    assert body["code"] == 429 and body["msg"] == "rate limit exceeded" and body["trace_id"]
    assert {r[1]["RateLimit-Remaining"] for r in ok} == {"0", "1", "2", "3", "4"}
    assert metric_value(gw.metrics(), "wxgated_ratelimit_rejected_total", route="limited") == 15


async def test_two_gateways_sharing_redis_admit_n_in_total(gateway: Any, redis_url: str) -> None:
    # A fresh db index per run keeps other tests' buckets out of the way.
    state = {"backend": "redis",
             "redis": {"url": redis_url.rsplit("/", 1)[0] + "/3", "timeout": "3s"}}
    a = gateway(config({"rate": 10, "per": "1m"}, state), wait=False)
    b = gateway(config({"rate": 10, "per": "1m"}, state), wait=False)
    a.wait_ready()
    b.wait_ready()
    results = await get_all([(a.url if i % 2 else b.url) + "/limited" for i in range(40)])
    assert sum(r[0] == 200 for r in results) == 10
    assert sum(r[0] == 429 for r in results) == 30


async def test_stopped_redis_allow_keeps_flowing_deny_answers_503(
    gateway: Any, tmp_path: Path
) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    state = {"backend": "redis",
             "redis": {"url": f"redis://127.0.0.1:{port}/0", "timeout": "200ms"}}
    cfg = config({"rate": 1000, "per": "1m"}, state)
    cfg["routes"].append({
        "name": "strict", "match": {"path": "/strict", "methods": ["GET"]},
        "filters": [{"rate_limit": {"rate": 1000, "per": "1m", "on_backend_error": "deny"}}],
        "respond": {"status": 200, "json": {"ok": True}},
    })
    try:
        gw = gateway(cfg)
        before = await get_all([gw.url + "/limited", gw.url + "/strict"])
        assert [r[0] for r in before] == [200, 200]
        proc.terminate()
        proc.wait(5)
        async with aiohttp.ClientSession() as s:
            for path, want in (("/limited", 200), ("/strict", 503)) * 5:
                t0 = time.monotonic()
                async with s.get(gw.url + path) as r:
                    assert r.status == want
                    if want == 503:
                        assert r.headers["Retry-After"] == "1"
                assert time.monotonic() - t0 < 1.5  # never stuck behind the dead Redis
        text = gw.metrics()
        assert metric_value(text, "wxgated_ratelimit_degraded_total",
                            route="limited", decision="allow") == 5
        assert metric_value(text, "wxgated_ratelimit_degraded_total",
                            route="strict", decision="deny") == 5
    finally:
        proc.terminate()
        proc.wait(5)
