"""The central access_token against WeChat's token lifecycle, black-box through `wxgated run`.

The stand-in retires tokens as WeChat does: 42001 once a token is past its expires_in,
40001 once another holder's new cgi-bin/token or forced stable_token has replaced it and
the overlap has run out. Each time the gateway refreshes once and the caller sees a plain
success; a token WeChat calls invalid with 40014 is handled the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.e2e_identity_harness import (
    APPID,
    HS_KEYS,
    SECRET,
    Client,
    StandIn,
    base_config,
    upstream_app,
)
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, served

METRIC = "wxgated_wechat_api_requests_total"
OVERLAP = 0.3  # the stand-in's 5-minute overlap, shrunk


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture
def standin() -> Iterator[StandIn]:
    s = StandIn()
    s.wx.token_overlap = OVERLAP
    yield s
    s.server.stop()


def config(wx_url: str, up_url: str, source: str) -> dict[str, Any]:
    cfg = base_config(wx_url, up_url, HS_KEYS)
    cfg["wechat"]["token"] = {"source": source}
    cfg["routes"].append(
        {"name": "check", "match": {"path": "/wx/check", "methods": ["POST"]},
         # public: these tests are about the access_token, not the caller's identity
         "wechat": {"action": "api", "path": "/wxa/msg_sec_check", "public": True}})
    return cfg


def gateway(tmp: Any, standin: StandIn, upstream: ThreadedApp,
            source: str = "stable_token") -> GatewayProcess:
    return GatewayProcess(tmp, config(standin.url, upstream.url, source)).start()


@pytest.fixture
def gw(standin: StandIn, upstream: ThreadedApp, tmp_path: Any) -> Iterator[GatewayProcess]:
    proc = gateway(tmp_path, standin, upstream)
    yield proc
    proc.stop()


async def check(client: Client, gw: GatewayProcess, text: str) -> tuple[int, Any]:
    """One msg_sec_check through the gateway; WeChat's answer comes back as text/plain JSON."""
    status, doc, _ = await client.call("POST", gw.url + "/wx/check", {"content": text},
                                       headers={"Content-Type": "application/json"})
    return status, json.loads(doc) if isinstance(doc, bytes) else doc


async def admin_token(client: Client, gw: GatewayProcess) -> dict[str, Any]:
    status, doc, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert status == 200, doc
    return doc


def token_fetches(wx: Any) -> int:
    return wx.calls["stable_token"] + wx.calls["token"]


async def test_an_expired_token_42001_is_refreshed_once_and_retried(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    wx = standin.wx
    first = (await admin_token(client, gw))["access_token"]
    status, doc = await check(client, gw, "one")
    assert (status, doc["errcode"]) == (200, 0) and wx.token_ok(first)
    wx.age_tokens(7201)  # past expires_in, while the gateway still counts it as valid
    assert wx.token_errcode(first) == 42001
    status, doc = await check(client, gw, "two")
    assert (status, doc["errcode"], json.loads(doc["echo"])) == (200, 0, {"content": "two"})
    assert wx.calls["msg_sec_check"] == 3  # ok; 42001, then the retry
    assert token_fetches(wx) == 2 and wx.calls["stable_token_force"] == 0
    second = wx.last_query["msg_sec_check"]["access_token"]
    assert second != first and wx.token_ok(second)
    metrics = gw.metrics()
    assert metric_value(metrics, METRIC, api="msg_sec_check", errcode="42001") == 1
    now = await admin_token(client, gw)
    assert now["access_token"] == second and now["expires_in"] > 7000


async def another_holder_refreshes(url: str, source: str) -> str:
    """What a second service holding the same AppSecret does: a new cgi-bin/token, or a
    forced stable_token. WeChat retires the token the gateway holds after the overlap."""
    async with aiohttp.ClientSession() as s:
        if source == "token":
            req = s.get(url + "/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": APPID, "secret": SECRET})
        else:
            req = s.post(url + "/cgi-bin/stable_token", data=json.dumps({
                "grant_type": "client_credential", "appid": APPID, "secret": SECRET,
                "force_refresh": True}))
        async with req as r:
            return str(json.loads(await r.read())["access_token"])


@pytest.mark.parametrize("source", ["stable_token", "token"])
async def test_after_another_holder_refreshes_the_gateway_recovers_on_its_next_call(
        source: str, standin: StandIn, upstream: ThreadedApp, tmp_path: Any,
        client: Client) -> None:
    wx = standin.wx
    gw = gateway(tmp_path, standin, upstream, source)
    try:
        mine = (await admin_token(client, gw))["access_token"]
        theirs = await another_holder_refreshes(standin.url, source)
        fetched = token_fetches(wx)
        # within the overlap the old token still works: nothing to refresh yet
        assert (await check(client, gw, "in overlap"))[0] == 200
        assert wx.last_query["msg_sec_check"]["access_token"] == mine
        await asyncio.sleep(OVERLAP + 0.2)
        assert wx.token_errcode(mine) == 40001
        status, doc = await check(client, gw, "after overlap")
        assert (status, doc["errcode"], json.loads(doc["echo"])) == \
            (200, 0, {"content": "after overlap"})
        assert wx.calls["msg_sec_check"] == 3  # ok; 40001, then the retry
        assert token_fetches(wx) == fetched + 1
        used = wx.last_query["msg_sec_check"]["access_token"]
        assert used != mine and wx.token_ok(used)
        if source == "stable_token":
            # stable_token hands every holder the forced token: no force of our own
            assert used == theirs and wx.calls["stable_token_force"] == 1
        else:
            # cgi-bin/token gave the gateway a new one, which retires the other holder's
            # (after the overlap): why WeChat wants one owner of the refresh
            assert used != theirs
        assert metric_value(gw.metrics(), METRIC, api="msg_sec_check", errcode="40001") == 1
        assert (await check(client, gw, "settled"))[0] == 200
        assert token_fetches(wx) == fetched + 1
    finally:
        gw.stop()


async def test_40014_invalid_access_token_is_refreshed_too(
        standin: StandIn, upstream: ThreadedApp, tmp_path: Any, client: Client) -> None:
    """cgi-bin/token as the source, so each refresh is a plain new token (no force)."""
    wx = standin.wx
    gw = gateway(tmp_path, standin, upstream, "token")
    try:
        first = (await admin_token(client, gw))["access_token"]
        wx.reject_token(first, 40014)  # "invalid access_token"
        status, doc = await check(client, gw, "hello")
        assert (status, doc["errcode"]) == (200, 0), doc
        assert wx.calls["msg_sec_check"] == 2 and wx.calls["token"] == 2
        second = wx.last_query["msg_sec_check"]["access_token"]
        assert second != first
        # the phone number API (parsed by the gateway, not passed through) does the same
        token, _ = await client.login(gw.url, wx, "o-40014")
        wx.reject_token(second, 40014)
        wx.add_phone_code("ph-40014", phone="13700001111", openid="o-40014")
        status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone",
                                           {"code": "ph-40014"}, token)
        assert (status, doc["data"]["purePhoneNumber"]) == (200, "13700001111"), doc
        assert wx.calls["getuserphonenumber"] == 2 and wx.calls["token"] == 3
    finally:
        gw.stop()
