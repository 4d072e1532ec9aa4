"""Consistent hashing across a reload that adds a target, and the protection state
(an open breaker, a spent rate limit) the reload keeps."""

from __future__ import annotations

from typing import Any

from tests.support.e2e_backend import Backend, get_many, upstream_state, wait_for
from tests.support.protection import owners, ring_config

# --- consistent hash across a reload, and state kept by the reload ---------------------


async def test_hash_is_sticky_and_adding_a_target_moves_few_keys_keeping_state(
        gateway: Any) -> None:
    names = ["E1", "E2", "E3", "E4", "E5", "K"]
    apps = {n: Backend(n).start() for n in names}
    try:
        gw = gateway(ring_config(apps, names[:4]))
        keys = [f"openid-{i}" for i in range(400)]
        before = await owners(gw, keys)
        assert set(before.values()) == {"E1", "E2", "E3", "E4"}
        assert await owners(gw, keys) == before  # every key stays on its target
        # state to keep across the reload: an open breaker and a spent rate limit
        apps["K"].status = 500
        tripped = await get_many(gw.url + "/keep/x", 3)
        assert [s for s, _, _ in tripped] == [500, 500, 503] and apps["K"].total == 2
        assert 28 <= int(tripped[2][1]["Retry-After"]) <= 30  # open_for: 30s
        limited = await get_many(gw.url + "/keep-limited", 3)
        assert [s for s, _, _ in limited] == [200, 200, 429]

        gw.write({**gw.config, **ring_config(apps, names[:5])})
        await wait_for(lambda: len(upstream_state(gw, "ring")) == 5, within=10,
                       what="the reload")
        after = await owners(gw, keys)
        moved = [k for k in keys if after[k] != before[k]]
        assert len(moved) / len(keys) <= 0.30  # ≥ 70% stay put (ideal: 4/5)
        assert moved and {after[k] for k in moved} == {"E5"}  # only onto the newcomer
        assert (await get_many(gw.url + "/keep/x", 1))[0][0] == 503
        assert apps["K"].total == 2  # still open: the reload kept the breaker
        assert (await get_many(gw.url + "/keep-limited", 1))[0][0] == 429
    finally:
        for b in apps.values():
            b.stop()
