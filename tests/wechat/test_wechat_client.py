"""WeChatClient against the stand-in over real sockets: parsing, errors, retries, metrics."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from tests.support.servers import free_port
from tests.support.wechat_standin import make_wechat_app
from wxgated.observe.metrics import REGISTRY
from wxgated.wechat.client import WeChatClient, WeChatError

APPID, SECRET = "wxtestappid", "s3cr3t-appsecret-value"


def count(api: str, errcode: int) -> float:
    v = REGISTRY.get_sample_value(
        "wxgated_wechat_api_requests_total",
        {"api": api, "errcode": str(errcode), "app": "default"})
    return v or 0.0


@pytest.fixture
async def wx(serve):
    app, ctl = make_wechat_app(APPID, SECRET)
    base = await serve(app)
    client = WeChatClient(base, APPID, SECRET, timeout=1.0, retries=2)
    yield client, ctl
    await client.close()


async def test_code2session_success_and_text_plain_json(wx) -> None:
    client, ctl = wx
    key = ctl.add_code("c1", "o-1", unionid="u-1")
    before = count("jscode2session", 0)
    doc = await client.code2session("c1")
    assert doc == {"openid": "o-1", "session_key": key, "unionid": "u-1"}
    assert ctl.last_query["jscode2session"]["grant_type"] == "authorization_code"
    assert count("jscode2session", 0) == before + 1


async def test_code_errors_carry_errcode_not_rid(wx) -> None:
    client, ctl = wx
    ctl.add_code("once", "o-1")
    await client.code2session("once")
    with pytest.raises(WeChatError) as used:
        await client.code2session("once")
    assert used.value.errcode == 40163 and used.value.api == "jscode2session"
    assert "rid:" in used.value.errmsg and not used.value.unreachable
    with pytest.raises(WeChatError) as unknown:
        await client.code2session("nope")
    assert unknown.value.errcode == 40029
    assert ctl.calls["jscode2session"] == 3  # errors other than -1 are not retried


async def test_minute_quota_gives_45011(wx) -> None:
    client, ctl = wx
    ctl.quota_per_minute = 1
    ctl.add_code("a", "o-a")
    ctl.add_code("b", "o-b")
    await client.code2session("a")
    with pytest.raises(WeChatError) as err:
        await client.code2session("b")
    assert err.value.errcode == 45011


async def test_busy_is_retried_with_backoff_then_succeeds(wx) -> None:
    client, ctl = wx
    busy = count("stable_token", -1)
    ctl.fail_next(2)
    doc = await client.get_stable_token()
    assert doc["access_token"]
    assert ctl.calls["stable_token"] == 3
    assert count("stable_token", -1) == busy + 2


async def test_busy_past_retries_raises_minus_one(wx) -> None:
    client, ctl = wx
    ctl.fail_next(5)
    with pytest.raises(WeChatError) as err:
        await client.get_stable_token()
    assert err.value.errcode == -1 and err.value.sent
    assert ctl.calls["stable_token"] == 3  # 1 + retries=2


async def test_code2session_busy_is_not_retried(wx) -> None:
    """A -1 after the js_code reached WeChat: a retry could only earn 40163."""
    client, ctl = wx
    ctl.add_code("c", "o-c")
    ctl.fail_next(5)
    with pytest.raises(WeChatError) as err:
        await client.code2session("c")
    assert err.value.errcode == -1 and err.value.sent
    assert ctl.calls["jscode2session"] == 1


async def test_code2session_is_retried_when_the_connection_failed() -> None:
    client = WeChatClient(f"http://127.0.0.1:{free_port()}", APPID, SECRET, retries=2,
                          backoff=0.01)
    before = count("jscode2session", -1)
    try:
        with pytest.raises(WeChatError) as err:
            await client.code2session("c")
    finally:
        await client.close()
    assert err.value.unreachable and not err.value.sent
    assert count("jscode2session", -1) == before + 3  # nothing was sent: all 3 tried


async def test_timeout_is_unreachable_and_hides_secret(serve, caplog) -> None:
    app, ctl = make_wechat_app(APPID, SECRET)
    base = await serve(app)
    ctl.latency = 1.0
    ctl.add_code("c", "o")
    client = WeChatClient(base, APPID, SECRET, timeout=0.2, retries=1)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(WeChatError) as err:
            await client.code2session("c")
    finally:
        await client.close()
    assert err.value.errcode == -1 and err.value.unreachable
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert SECRET not in str(err.value) and SECRET not in repr(client)
    assert SECRET not in caplog.text
    assert err.value.sent
    assert ctl.calls["jscode2session"] == 1  # sent, then timed out: never retried
    client = WeChatClient(base, APPID, SECRET, timeout=0.2, retries=1)
    try:
        with pytest.raises(WeChatError):
            await client.get_stable_token()
    finally:
        await client.close()
    assert ctl.calls["stable_token"] == 2  # an idempotent call keeps its retry


async def test_connection_refused_is_unreachable() -> None:
    client = WeChatClient(f"http://127.0.0.1:{free_port()}", APPID, SECRET, retries=1,
                          backoff=0.01)
    try:
        with pytest.raises(WeChatError) as err:
            await client.get_stable_token()
    finally:
        await client.close()
    assert err.value.unreachable and err.value.errcode == -1 and err.value.api == "stable_token"
    assert SECRET not in str(err.value)


async def test_html_error_page_counts_as_no_answer(serve) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/cgi-bin/token", html)
    client = WeChatClient(await serve(app), APPID, SECRET, retries=0)
    try:
        with pytest.raises(WeChatError) as err:
            await client.get_token()
    finally:
        await client.close()
    assert err.value.errcode == -1 and err.value.unreachable


async def test_tokens_and_wrong_secret(wx, serve) -> None:
    client, ctl = wx
    t1 = await client.get_token()
    assert ctl.token_ok(t1["access_token"]) and t1["expires_in"] == 7200
    s1 = await client.get_stable_token()
    s2 = await client.get_stable_token()
    assert s1["access_token"] == s2["access_token"] != t1["access_token"]
    s3 = await client.get_stable_token(force_refresh=True)
    assert s3["access_token"] != s1["access_token"]
    bad = WeChatClient(client.api_base, APPID, "wrong-secret", retries=0)
    try:
        with pytest.raises(WeChatError) as err:
            await bad.get_token()
    finally:
        await bad.close()
    assert err.value.errcode == 40001


async def test_check_session_signature_and_phone(wx) -> None:
    client, ctl = wx
    ctl.add_code("c", "o-1")
    sess = await client.code2session("c")
    token = (await client.get_stable_token())["access_token"]
    ok = await client.check_session(token, "o-1", sess["session_key"])
    assert ok["errcode"] == 0
    with pytest.raises(WeChatError) as err:
        await client.check_session(token, "o-1", "AAAAAAAAAAAAAAAAAAAAAA==")
    assert err.value.errcode == 87009
    ctl.add_phone_code("p1", "13800138000")
    ctl.add_phone_code("p2", "13900139000")
    a = await client.get_phone_number(token, "p1")
    b = await client.get_phone_number(token, "p2")
    # The stand-in alternates str and int countryCode, like real WeChat answers.
    assert a["countryCode"] == b["countryCode"] == "86"
    assert a["purePhoneNumber"] == "13800138000"
    ctl.expire_tokens()
    ctl.add_phone_code("p3")
    with pytest.raises(WeChatError) as expired:
        await client.get_phone_number(token, "p3")
    assert expired.value.errcode == 40001


async def test_concurrent_calls_share_one_session(wx) -> None:
    client, ctl = wx
    for i in range(20):
        ctl.add_code(f"c{i}", f"o{i}")
    docs = await asyncio.gather(*(client.code2session(f"c{i}") for i in range(20)))
    assert [d["openid"] for d in docs] == [f"o{i}" for i in range(20)]


async def test_token_lifecycle_as_wechat_documents_it(wx) -> None:
    """What the stand-in answers, so the gateway's tests meet WeChat's behaviour: a new
    token of one kind retires the previous one of that kind after the overlap, the two
    kinds are independent, and an expired token is 42001 while a retired one is 40001."""
    client, ctl = wx
    ctl.token_overlap = 0.2

    async def errcode(token: str) -> int:
        try:
            await client.get_phone_number(token, "p-unknown")
        except WeChatError as err:
            return 0 if err.errcode == 40029 else err.errcode  # 40029: the token passed
        raise AssertionError("an unknown phone code was accepted")

    t1 = (await client.get_token())["access_token"]
    s1 = (await client.get_stable_token())["access_token"]
    t2 = (await client.get_token())["access_token"]
    s2 = (await client.get_stable_token(force_refresh=True))["access_token"]
    assert len({t1, t2, s1, s2}) == 4
    assert [await errcode(t) for t in (t1, t2, s1, s2)] == [0, 0, 0, 0]  # the overlap
    await asyncio.sleep(0.3)
    assert [await errcode(t) for t in (t1, t2, s1, s2)] == [40001, 0, 40001, 0]
    assert (await client.get_stable_token())["access_token"] == s2  # no force: the same
    ctl.age_tokens(7201)
    assert [await errcode(t) for t in (t1, t2, s2)] == [40001, 42001, 42001]
    assert await errcode("never-issued") == 40001
    s3 = (await client.get_stable_token())["access_token"]
    assert s3 != s2 and await errcode(s3) == 0
