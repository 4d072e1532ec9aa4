"""TokenKeeper: one fetch per burst, one refresher among instances, refresh-once on 40001."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.wechat_standin import make_wechat_app
from wxgated.state import open_backend
from wxgated.wechat.client import WeChatClient, WeChatError
from wxgated.wechat.token_keeper import TokenKeeper

APPID, SECRET = "wxtokenapp", "token-test-secret"


@pytest.fixture
async def wx(serve):
    app, ctl = make_wechat_app(APPID, SECRET)
    base = await serve(app)
    clients: list[WeChatClient] = []

    def client(**kw) -> WeChatClient:
        c = WeChatClient(base, APPID, SECRET, **{"timeout": 2.0, "retries": 0, **kw})
        clients.append(c)
        return c

    yield ctl, client
    for c in clients:
        await c.close()


def redis_state(url: str, prefix: str):
    return open_backend({"backend": "redis", "redis": {"url": url, "timeout": "1s",
                                                      "prefix": prefix}})


async def test_a_burst_of_callers_causes_one_fetch(wx) -> None:
    ctl, client = wx
    ctl.latency = 0.1  # the fetch is slow, so all 50 callers overlap with it
    keeper = TokenKeeper(client(), open_backend({"backend": "memory"}), APPID)
    tokens = await asyncio.gather(*(keeper.get() for _ in range(50)))
    assert len(set(tokens)) == 1 and ctl.token_ok(tokens[0])
    assert ctl.calls["stable_token"] == 1
    assert await keeper.get() == tokens[0] and ctl.calls["stable_token"] == 1


async def test_two_instances_on_one_redis_fetch_once(wx, redis_url: str) -> None:
    ctl, client = wx
    ctl.latency = 0.2
    prefix = f"t{uuid.uuid4().hex}:"
    state_a, state_b = redis_state(redis_url, prefix), redis_state(redis_url, prefix)
    a = TokenKeeper(client(), state_a, APPID)
    b = TokenKeeper(client(), state_b, APPID)
    try:
        tokens = await asyncio.gather(*(k.get() for _ in range(25) for k in (a, b)))
    finally:
        await state_a.close()
        await state_b.close()
    assert len(set(tokens)) == 1
    assert ctl.calls["stable_token"] == 1


async def test_a_new_instance_reuses_the_shared_token(wx, redis_url: str) -> None:
    ctl, client = wx
    prefix = f"t{uuid.uuid4().hex}:"
    first = redis_state(redis_url, prefix)
    token = await TokenKeeper(client(), first, APPID, use_stable=False).get()
    await first.close()
    second = redis_state(redis_url, prefix)
    try:
        assert await TokenKeeper(client(), second, APPID, use_stable=False).get() == token
    finally:
        await second.close()
    assert ctl.calls["token"] == 1


async def test_40001_refreshes_once_then_retries(wx) -> None:
    ctl, client = wx
    c = client()
    keeper = TokenKeeper(c, open_backend({"backend": "memory"}), APPID)
    first = await keeper.get()
    ctl.expire_tokens()  # WeChat now rejects `first` with 40001
    ctl.add_phone_code("p1", "13800138000")
    info = await keeper.call_with_token(lambda t: c.get_phone_number(t, "p1"))
    assert info["purePhoneNumber"] == "13800138000"
    assert ctl.calls["getuserphonenumber"] == 2 and ctl.calls["stable_token"] == 2
    assert await keeper.get() != first


async def test_a_token_still_rejected_after_refresh_is_not_retried_forever(wx) -> None:
    ctl, client = wx
    keeper = TokenKeeper(client(), open_backend({"backend": "memory"}), APPID)
    seen: list[str] = []

    async def always_bad(token: str) -> None:
        seen.append(token)
        raise WeChatError(42001, "access_token expired, rid: x", "getuserphonenumber")

    with pytest.raises(WeChatError) as err:
        await keeper.call_with_token(always_bad)
    assert err.value.errcode == 42001
    assert len(seen) == 2 and seen[0] != seen[1]
    # stable_token returned the rejected token again, so the keeper forced a refresh
    assert ctl.calls["stable_token"] == 3
    assert ctl.last_query["stable_token"] == {}  # the secret went in the body, not the URL


async def test_other_errors_are_not_treated_as_bad_tokens(wx) -> None:
    ctl, client = wx
    keeper = TokenKeeper(client(), open_backend({"backend": "memory"}), APPID)

    async def fails(token: str) -> None:
        raise WeChatError(40029, "invalid code", "getuserphonenumber")

    with pytest.raises(WeChatError):
        await keeper.call_with_token(fails)
    assert ctl.calls["stable_token"] == 1


async def test_refreshes_ahead_of_expiry_and_survives_wechat_outage(wx) -> None:
    ctl, client = wx
    ctl.token_ttl = 3  # refresh_at = max(3 - 2, 1.5) s after the fetch
    keeper = TokenKeeper(client(), open_backend({"backend": "memory"}), APPID,
                         use_stable=False, refresh_margin=2)
    first = await keeper.get()
    assert await keeper.get() == first and ctl.calls["token"] == 1
    await asyncio.sleep(1.6)
    ctl.fail_next(1)  # WeChat is busy: the old token is still valid for ~1.4 s, keep it
    assert await keeper.get() == first and ctl.calls["token"] == 2
    second = await keeper.get()
    assert second != first and ctl.calls["token"] == 3 and ctl.token_ok(second)


async def test_no_token_and_wechat_down_raises(wx) -> None:
    ctl, client = wx
    keeper = TokenKeeper(client(), open_backend({"backend": "memory"}), APPID)
    ctl.fail_next(1)
    with pytest.raises(WeChatError) as err:
        await keeper.get()
    assert err.value.errcode == -1
    assert await keeper.get()  # and the next call recovers


async def test_waits_out_a_dead_lock_holder(wx) -> None:
    ctl, client = wx
    state = open_backend({"backend": "memory"})
    keeper = TokenKeeper(client(), state, APPID, lock_ttl=0.5)
    # Another instance took the lock and died without writing a token.
    assert await state.acquire_lock(keeper.lock_key, 0.4) is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    token = await keeper.get()
    assert ctl.token_ok(token) and ctl.calls["stable_token"] == 1
    assert loop.time() - started >= 0.35  # it waited for the lease instead of fetching twice


async def test_force_refresh_is_shared_across_keepers_and_rationed(wx) -> None:
    """Two instances on one state backend: one force_refresh per 30 s between them."""
    ctl, client = wx
    state = open_backend({"backend": "memory"})
    a, b = (TokenKeeper(client(), state, APPID) for _ in range(2))
    first = await a.get()
    ctl.reject_token(first)
    second = await a.invalidate(first)
    assert second != first and ctl.calls["stable_token_force"] == 1
    ctl.reject_token(second)
    with pytest.raises(WeChatError) as err:
        await b.invalidate(second)
    assert err.value.errcode == 40001 and "force_refresh" in err.value.errmsg
    assert ctl.calls["stable_token_force"] == 1
    token, left = await b.current()
    assert token == second and 7000 < left <= 7200
