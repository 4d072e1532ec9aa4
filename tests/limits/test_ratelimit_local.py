"""rate_limit with the local store: docs/CONFIG.md semantics, keys, missing-key policy, reload."""

from __future__ import annotations

import asyncio

import pytest
from jsonschema import Draft202012Validator

from tests.support.ratelimit import build, hdr, make_req, msg, ok, passed, refused, run
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.filters.rate_limit import RateLimit
from wxgated.gateway.engine import chain as engine_chain
from wxgated.http.message import HTTPError, Request, Response
from wxgated.limits import LocalStore, Rate, gcra
from wxgated.registry import Registry


async def test_burst_defaults_to_rate() -> None:
    chain = build({"rate": 3, "per": "1h"})
    results = [await run(chain, make_req()) for _ in range(4)]
    assert [getattr(r, "status", None) for r in results] == [200, 200, 200, 429]


async def test_bucket_refills_after_a_real_wait() -> None:
    chain = build({"rate": 20, "per": "1s", "burst": 2})
    assert passed(await run(chain, make_req()))
    assert passed(await run(chain, make_req()))
    err = await run(chain, make_req())
    assert refused(err) and err.status == 429
    assert hdr(err, b"retry-after") == b"1"  # 50 ms rounds up to a whole second
    await asyncio.sleep(0.12)  # two tokens at 20/s
    through = 0
    while passed(await run(chain, make_req())):
        through += 1
        assert through <= 2, "the bucket must never hold more than burst"
    assert through >= 1


async def test_exactly_n_pass_under_concurrency() -> None:
    async def slow(req: Request) -> Response:
        await asyncio.sleep(0.01)
        return Response(200)

    chain = build({"rate": 10, "per": "1m"}, terminal=slow)
    results = await asyncio.gather(*(run(chain, make_req()) for _ in range(50)))
    assert sum(passed(r) for r in results) == 10


async def test_keys_isolate_clients() -> None:
    chain = build({"rate": 2, "per": "1m", "key": "ip"})
    for _ in range(2):
        assert passed(await run(chain, make_req("1.1.1.1")))
    assert refused(await run(chain, make_req("1.1.1.1")))
    assert passed(await run(chain, make_req("2.2.2.2")))


async def test_claim_key_follows_the_user_across_ips() -> None:
    chain = build({"rate": 1, "per": "1m", "key": "claim.openid"})
    assert passed(await run(chain, make_req("1.1.1.1", claims={"openid": "o1"})))
    err = await run(chain, make_req("2.2.2.2", claims={"openid": "o1"}))
    assert refused(err) and err.status == 429
    assert passed(await run(chain, make_req("1.1.1.1", claims={"openid": "o2"})))


async def test_missing_key_falls_back_to_ip_never_one_shared_bucket() -> None:
    chain = build({"rate": 1, "per": "1m", "key": "header.x-api-key"})
    # Two keyless clients do not share a bucket...
    assert passed(await run(chain, make_req("1.1.1.1")))
    assert passed(await run(chain, make_req("2.2.2.2")))
    assert refused(await run(chain, make_req("1.1.1.1")))
    # ...an empty header counts as missing, not as the key ""...
    assert passed(await run(chain, make_req("3.3.3.3", [(b"x-api-key", b"")])))
    assert passed(await run(chain, make_req("4.4.4.4", [(b"x-api-key", b"")])))
    # ...and a key that spells an ip does not reach that ip's fallback bucket.
    keyed = make_req("9.9.9.9", [(b"x-api-key", b"1.1.1.1")])
    assert passed(await run(chain, keyed))


async def test_missing_key_reject_policy() -> None:
    chain = build({"rate": 5, "per": "1m", "key": "header.x-api-key",
                   "on_missing_key": "reject"})
    err = await run(chain, make_req())
    assert refused(err) and err.status == 400
    assert "x-api-key" in msg(err)
    assert passed(await run(chain, make_req(headers=[(b"x-api-key", b"k")])))

    login = build({"rate": 5, "per": "1m", "key": "claim.openid", "on_missing_key": "reject"})
    err = await run(login, make_req())
    assert refused(err) and err.status == 401
    assert hdr(err, b"www-authenticate") == b"Bearer"


async def test_long_keys_are_bounded_but_still_distinct() -> None:
    chain = build({"rate": 1, "per": "1m", "key": "header.x-k"})
    a, b = b"a" * 5000, b"a" * 4999 + b"b"
    assert passed(await run(chain, make_req(headers=[(b"x-k", a)])))
    assert passed(await run(chain, make_req(headers=[(b"x-k", b)])))
    assert refused(await run(chain, make_req(headers=[(b"x-k", a)])))


async def test_headers_are_added_to_errors_from_downstream() -> None:
    async def fail(req: Request) -> Response:
        raise HTTPError(502, "bad gateway")

    chain = build({"rate": 5, "per": "1m"}, terminal=fail)
    err = await run(chain, make_req())
    assert refused(err) and err.status == 502
    assert hdr(err, b"ratelimit-remaining") == b"4"


async def test_shared_response_headers_are_not_mutated() -> None:
    shared = [(b"content-type", b"application/json")]

    async def static(req: Request) -> Response:
        return Response(200, shared, b"{}")

    chain = build({"rate": 5, "per": "1m"}, terminal=static)
    await chain(make_req())
    await chain(make_req())
    assert shared == [(b"content-type", b"application/json")]


async def test_buckets_survive_a_reload_with_unchanged_config() -> None:
    registry = Registry()
    cfg = {"rate": 2, "per": "1m"}
    first = build(dict(cfg), route="reload", registry=registry)
    registry.commit()
    await first(make_req())
    await first(make_req())
    second = build(dict(cfg), route="reload", registry=registry)  # same options: kept
    registry.commit()
    assert refused(await run(second, make_req()))
    third = build({"rate": 3, "per": "1m"}, route="reload", registry=registry)  # changed
    registry.commit()
    assert passed(await run(third, make_req()))


async def test_two_limits_on_one_route_keep_separate_buckets() -> None:
    per_ip = {"rate": 1, "per": "1m"}
    overall = {"rate": 3, "per": "1m", "key": "route"}
    registry = Registry()
    ctx = CompileContext(config={}, registry=registry, route_name="two",
                         route={"filters": [{"rate_limit": per_ip}, {"rate_limit": overall}]})
    chain = engine_chain([RateLimit(per_ip, ctx), RateLimit(overall, ctx)], ok)
    results = [await run(chain, make_req(f"10.0.0.{i}")) for i in range(5)]
    assert [getattr(r, "status", None) for r in results] == [200, 200, 200, 429, 429]
    assert refused(await run(chain, make_req("10.0.0.1")))


def test_bad_options_are_config_errors_at_their_position() -> None:
    with pytest.raises(SemanticError) as e:
        build({"rate": 5, "key": "query.x"})
    assert e.value.path == ("key",)
    with pytest.raises(SemanticError) as e:
        build({"rate": 5, "store": "redis"})  # no state.redis to talk to
    assert e.value.path == ("store",)


def test_schema_rejects_typos_and_nonsense() -> None:
    v = Draft202012Validator(FILTERS["rate_limit"].schema)
    assert v.is_valid({"rate": 100, "per": "1m", "burst": 20, "key": "claim.openid"})
    assert v.is_valid({"rate": 1, "key": ["claim.openid", "ip"], "on_backend_error": "deny"})
    for bad in ({"rate": 0}, {"per": "1m"}, {"rate": 5, "pre": "1m"}, {"rate": 5, "per": "0s"},
                {"rate": 5, "per": "soon"}, {"rate": 5, "on_missing_key": "share"}):
        assert not v.is_valid(bad), bad


def test_gcra_math() -> None:
    r = Rate(5, 60.0, 5)
    assert (r.interval, r.tolerance) == (12_000_000, 60_000_000)
    params = (r.interval, r.tolerance, r.burst)
    tat, now = 0, 1_000_000_000
    for left in (4, 3, 2, 1, 0):
        tat, (allowed, limit, remaining, _, _) = gcra(tat, now, *params)
        assert allowed and limit == 5 and remaining == left
    tat2, (allowed, _, _, reset, retry) = gcra(tat, now, *params)
    assert not allowed and tat2 == tat and retry == 12.0 and reset == 60.0
    _, (allowed, _, remaining, _, _) = gcra(tat, now + 12_000_000, *params)  # a token back
    assert allowed and remaining == 0


def test_local_store_stays_bounded_under_many_keys() -> None:
    store = LocalStore(Rate(1, 60.0), max_keys=100)
    for i in range(10_000):
        store.decide(f"client-{i}")
    assert len(store) == 100
    # The most recent clients are the ones remembered.
    assert not store.decide("client-9999")[0]
