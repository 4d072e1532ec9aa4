"""rate_limit's docs/CONFIG.md semantics hold whichever store decides: the local one
(state.backend: memory) and the Redis one (state.backend: redis, the default store then)."""

from __future__ import annotations

from tests.support.ratelimit import build, hdr, make_req, msg, passed, refused, rejected, run
from wxgated.state import StateBackend


async def test_five_per_minute_lets_five_through_then_one_every_12s(
        state_backend: StateBackend) -> None:
    route = f"five-{state_backend.name}"
    chain = build({"rate": 5, "per": "1m", "burst": 5}, route=route,
                  services={"state": state_backend},
                  config={"state": {"backend": state_backend.name}})
    before = rejected(route)
    for left in (4, 3, 2, 1, 0):
        resp = await run(chain, make_req())
        assert passed(resp) and resp.status == 200
        assert hdr(resp, b"ratelimit-limit") == b"5"
        assert hdr(resp, b"ratelimit-remaining") == str(left).encode()
    assert hdr(resp, b"ratelimit-reset") == b"60"  # empty bucket: full again in 60 s
    err = await run(chain, make_req())
    assert refused(err) and err.status == 429
    assert msg(err) == "rate limit exceeded"
    assert hdr(err, b"retry-after") == b"12"
    assert hdr(err, b"ratelimit-limit") == b"5"
    assert hdr(err, b"ratelimit-remaining") == b"0"
    assert hdr(err, b"ratelimit-reset") == b"60"
    assert rejected(route) == before + 1
