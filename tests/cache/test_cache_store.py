"""Cache lifetimes and stores: ttl, stale-if-error, size caps, reloads, Redis, metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from tests.support.cache_harness import call, request, status_of
from wxgated.cache.entry import Entry, dumps, loads
from wxgated.cache.memory import MemoryStore
from wxgated.observe.metrics import REGISTRY
from wxgated.registry import Registry


async def test_ttl_caps_the_upstream_max_age(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "300ms"})
    await call(chain, "/public")
    assert status_of((await call(chain, "/public"))[0]) == "HIT"
    await asyncio.sleep(0.4)
    r, d = await call(chain, "/public")
    assert status_of(r) == "MISS" and d["n"] == 2


async def test_ttl_gives_freshness_when_the_upstream_gives_none(env: Any) -> None:
    h, app = env
    with_ttl = h.chain({"ttl": "30s"})
    await call(with_ttl, "/silent")
    assert status_of((await call(with_ttl, "/silent"))[0]) == "HIT"
    without = h.chain({})
    await call(without, "/silent")
    assert status_of((await call(without, "/silent"))[0]) == "BYPASS"


async def test_larger_bodies_pass_whole_and_uncached(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s", "max_entry": "1KiB"})
    for _ in range(2):
        resp = await chain(request("/big"))
        assert status_of(resp) == "BYPASS"
        body = await resp.read_body()
        assert body == b"".join(bytes([65 + i]) * 512 for i in range(8))
    assert app["calls"]["/big"] == 2
    small = h.chain({"ttl": "30s"})  # default max_entry 1MiB: stored
    await small(request("/big"))
    assert status_of(await small(request("/big"))) == "HIT"


async def test_stale_if_error_serves_the_expired_entry(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "200ms", "stale_if_error": "10s"})
    _, d1 = await call(chain, "/flaky")
    app["fail"] = True
    await asyncio.sleep(0.3)
    r, d = await call(chain, "/flaky")
    assert status_of(r) == "STALE" and r.status == 200 and d == d1
    app["fail"] = False
    r, d = await call(chain, "/flaky")
    assert status_of(r) == "MISS" and d["n"] == 3


async def test_without_stale_if_error_the_failure_shows(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "200ms"})
    await call(chain, "/flaky")
    app["fail"] = True
    await asyncio.sleep(0.3)
    r, _ = await call(chain, "/flaky")
    assert r.status == 503 and status_of(r) == "BYPASS"


async def test_memory_entries_survive_reload_of_an_unchanged_route(env: Any) -> None:
    h, app = env
    registry = Registry()
    old = h.chain({"ttl": "30s"}, name="home", registry=registry)
    await call(old, "/public")
    same = h.chain({"ttl": "30s"}, name="home", registry=registry)
    assert status_of((await call(same, "/public"))[0]) == "HIT"
    changed = h.chain({"ttl": "20s"}, name="home", registry=registry)
    assert status_of((await call(changed, "/public"))[0]) == "MISS"


async def test_state_store_is_shared_between_instances(env: Any, redis_url: str) -> None:
    from wxgated.state.redis import RedisState

    h, app = env
    name = f"shared-{uuid.uuid4().hex[:8]}"
    s1, s2 = RedisState(redis_url), RedisState(redis_url)
    try:
        worker1 = h.chain({"ttl": "1h", "store": "state"}, name=name, state=s1)
        worker2 = h.chain({"ttl": "1h", "store": "state"}, name=name, state=s2)
        r1, d1 = await call(worker1, "/aged")
        r2, d2 = await call(worker2, "/aged")
        assert (status_of(r1), status_of(r2)) == ("MISS", "HIT")
        assert d1 == d2 and app["calls"]["/aged"] == 1
        assert int(r2.header(b"age")) >= 100
    finally:
        await s1.close()
        await s2.close()


async def test_metric_counts_hits_misses_and_bypasses(env: Any) -> None:
    h, _ = env
    name = f"m-{uuid.uuid4().hex[:8]}"
    chain = h.chain({"ttl": "30s"}, name=name)
    for path in ("/public", "/public", "/public", "/cookie"):
        await call(chain, path)

    def count(result: str) -> float | None:
        return REGISTRY.get_sample_value("wxgated_cache_requests_total",
                                         {"route": name, "result": result})

    assert (count("miss"), count("hit"), count("bypass")) == (1.0, 2.0, 1.0)


async def test_a_hit_carries_the_current_trace_id_not_the_stored_one(env: Any) -> None:
    h, app = env
    chain = h.chain({"ttl": "30s"})
    first = request("/enveloped")
    await (await chain(first)).read_body()
    again = request("/enveloped")
    again.trace_id = "the-second-request-trace"
    resp = await chain(again)
    doc = json.loads(await resp.read_body())
    assert status_of(resp) == "HIT" and app["calls"]["/enveloped"] == 1
    assert doc["trace_id"] == "the-second-request-trace"
    assert resp.header(b"content-length") == str(len(resp.body)).encode()


def test_entries_round_trip_through_their_binary_form() -> None:
    e = Entry(203, [(b"content-type", b"application/json"), (b"x-a", b"\x00\xff")],
              b'{"trace_id":"t1"}', 1.5, 2.5, 3.5, b'"trace_id":"t1"')
    assert loads(dumps(e)) == e
    assert loads(b"garbage") is None and loads(dumps(e)[:20]) is None


async def test_memory_store_evicts_least_recently_used_by_bytes() -> None:
    far = time.time() + 60
    store = MemoryStore(max_bytes=3 * (1000 + 200))

    def entry(tag: bytes) -> Entry:
        return Entry(200, [], tag * 1000, 0.0, far, far)

    for k in (b"a", b"b", b"c"):
        await store.put(k.decode(), entry(k))
    assert await store.get("a") is not None  # a is now the most recently used
    await store.put("d", entry(b"d"))
    assert await store.get("b") is None
    assert {k for k in "acd" if await store.get(k)} == {"a", "c", "d"}
    assert store.used <= store.max_bytes
    await store.put("huge", Entry(200, [], b"x" * 10_000, 0.0, far, far))
    assert await store.get("huge") is None and len(store) == 3
