"""WeChat correctness details, black-box through `wxgated run` against the stand-in.

One-time js_codes are never retried once sent, configuration errcodes are logged for the
operator, a stale session_key asks for a new login, watermarks are checked, phone codes
are redeemed for the caller's openid only, and force_refresh is rationed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.e2e_identity_harness import (
    APPID,
    HS_KEYS,
    Client,
    StandIn,
    base_config,
    upstream_app,
)
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, free_port, served
from wxgated.wechat.crypto import encrypt_user_data

METRIC = "wxgated_wechat_api_requests_total"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


def config(wx_url: str, up_url: str) -> dict[str, Any]:
    cfg = base_config(wx_url, up_url, HS_KEYS)
    cfg["wechat"]["timeout"] = "300ms"
    return cfg


@pytest.fixture
def gw(standin: StandIn, upstream: ThreadedApp, tmp_path: Any) -> Iterator[GatewayProcess]:
    """A fresh gateway per test: each one counts its own WeChat calls and log lines."""
    proc = GatewayProcess(tmp_path, config(standin.url, upstream.url)).start()
    yield proc
    proc.stop()


async def login_code(client: Client, gw: GatewayProcess, code: str) -> tuple[int, Any]:
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/login", {"code": code})
    return status, doc


# -- 1: a js_code is sent at most once ----------------------------------------------------


async def test_login_is_not_retried_once_the_code_was_sent(gw: GatewayProcess, standin: StandIn,
                                                           client: Client) -> None:
    wx = standin.wx
    wx.add_code("slow-code", "o-slow")
    wx.delays["jscode2session"] = 1.0  # accepted, answered after the 300 ms timeout
    status, doc = await login_code(client, gw, "slow-code")
    assert (status, doc["code"]) == (503, -1)
    assert "wx.login again" in doc["msg"]
    await asyncio.sleep(1.2)  # no late retry either
    assert wx.calls["jscode2session"] == 1
    # WeChat did take the code: the retry the gateway refrained from would have got 40163
    wx.delays.clear()
    status, doc = await login_code(client, gw, "slow-code")
    assert (status, doc["code"]) == (401, 40163)
    # a -1 "system busy" answer is not retried either
    wx.add_code("busy-code", "o-busy")
    wx.fail_next(5)
    status, doc = await login_code(client, gw, "busy-code")
    assert (status, doc["code"]) == (503, -1)
    assert wx.calls["jscode2session"] == 3
    wx.fail_next(0)


async def test_connect_errors_are_retried(upstream: ThreadedApp, tmp_path: Any,
                                          client: Client) -> None:
    """Nothing was sent when the connection is refused: login and token calls retry."""
    closed = f"http://127.0.0.1:{free_port()}"
    proc = GatewayProcess(tmp_path, config(closed, upstream.url)).start()
    try:
        status, doc = await login_code(client, proc, "any")
        assert (status, doc["code"]) == (503, -1)
        status, _, _ = await client.call("GET", proc.admin + "/-/wechat/access_token")
        assert status == 503
        metrics = proc.metrics()
    finally:
        proc.stop()
    assert metric_value(metrics, METRIC, api="jscode2session", errcode="-1") == 3
    assert metric_value(metrics, METRIC, api="stable_token", errcode="-1") == 3


async def test_standin_codes_are_one_time_and_expire(gw: GatewayProcess, standin: StandIn,
                                                     client: Client) -> None:
    standin.wx.add_code("old-code", "o-old")
    standin.wx.age_codes(301)  # WeChat's js_codes live 5 minutes
    assert (await login_code(client, gw, "old-code"))[1]["code"] == 40029
    standin.wx.add_code("fresh", "o-fresh")
    assert (await login_code(client, gw, "fresh"))[0] == 200
    status, doc = await login_code(client, gw, "fresh")
    assert (status, doc["code"], doc["msg"]) == (401, 40163, "code already used")


# -- 2: configuration errcodes are told to the operator -----------------------------------


async def test_configuration_errcodes_are_logged_once_a_minute(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    wx = standin.wx
    wx.misconfigure(40125)
    for _ in range(3):
        status, doc = await login_code(client, gw, "whatever")
        assert (status, doc["code"]) == (502, 40125)
    wx.misconfigure(40164)
    status, doc = await login_code(client, gw, "whatever")
    assert (status, doc["code"]) == (502, 40164)
    wx.misconfigure(40001)  # from the token fetch: a credential problem, not a stale token
    status, body, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert (status, body["errcode"]) == (503, 40001)
    wx.misconfigure(None)
    await asyncio.sleep(0.2)
    err = gw.stderr()
    assert err.count("WeChat rejected the AppSecret (40125): check wechat.secret") == 1, err
    assert err.count("(40164): add it to the mini program's IP whitelist") == 1, err
    assert err.count("access_token (40001): check wechat.secret") == 1, err
    metrics = gw.metrics()
    assert metric_value(metrics, METRIC, api="jscode2session", errcode="40125") == 3
    assert metric_value(metrics, METRIC, api="jscode2session", errcode="40164") == 1
    assert metric_value(metrics, METRIC, api="stable_token", errcode="40001") == 1


# -- 3: decrypt: stale session_key, watermark ---------------------------------------------


def sealed(key: str, doc: dict[str, Any]) -> dict[str, str]:
    iv = os.urandom(16)
    return {"encryptedData": encrypt_user_data(key, doc, iv),
            "iv": base64.b64encode(iv).decode()}


async def test_decrypt_with_a_stale_session_key_asks_for_a_new_login(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    old_token, _ = await client.login(gw.url, standin.wx, "o-twice")
    new_token, new_key = await client.login(gw.url, standin.wx, "o-twice")  # another device
    user = {"openId": "o-twice", "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    body = sealed(new_key, user)  # WeChat encrypts with the newest session_key
    status, doc, headers = await client.call("POST", gw.url + "/auth/wx/decrypt", body,
                                             old_token)
    assert (status, doc["code"], doc["msg"]) == (401, 401, "session_key is out of date: "
                                                           "log in again")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt", body, new_token)
    assert (status, doc["data"]) == (200, user)


async def test_decrypt_checks_watermark_time_and_appid(gw: GatewayProcess, standin: StandIn,
                                                       client: Client) -> None:
    token, key = await client.login(gw.url, standin.wx, "o-mark")
    now = int(time.time())
    cases = {
        now - 400: "watermark timestamp outside the accepted window (stale data)",
        now + 400: "watermark timestamp outside the accepted window (stale data)",
    }
    for stamp, msg in cases.items():
        body = sealed(key, {"watermark": {"appid": APPID, "timestamp": stamp}})
        status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt", body, token)
        assert (status, doc["msg"]) == (400, msg)
    body = sealed(key, {"watermark": {"appid": "wxother", "timestamp": now}})
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt", body, token)
    assert (status, doc["msg"]) == (400, "watermark appid mismatch")
    body = sealed(key, {"watermark": {"appid": APPID, "timestamp": now - 200}})
    assert (await client.call("POST", gw.url + "/auth/wx/decrypt", body, token))[0] == 200


# -- 4: getPhoneNumber names the caller ----------------------------------------------------


async def test_phone_code_is_redeemed_for_the_callers_openid(gw: GatewayProcess,
                                                             standin: StandIn,
                                                             client: Client) -> None:
    wx = standin.wx
    token, _ = await client.login(gw.url, wx, "o-phone")
    wx.add_phone_code("ph-mine", phone="13911112222", openid="o-phone")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-mine"},
                                       token)
    assert (status, doc["data"]["purePhoneNumber"]) == (200, "13911112222")
    assert wx.last_body["getuserphonenumber"] == {"code": "ph-mine", "openid": "o-phone"}
    wx.add_phone_code("ph-theirs", openid="o-someone-else")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-theirs"},
                                       token)
    assert (status, doc["code"]) == (400, 40029)
    wx.add_phone_code("ph-old", openid="o-phone")
    wx.age_codes(301)
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-old"},
                                       token)
    assert (status, doc["code"]) == (400, 40029)


# -- 5: force_refresh rationed, expires_in on the admin endpoint ---------------------------


async def test_force_refresh_at_most_once_per_30s(gw: GatewayProcess, standin: StandIn,
                                                  client: Client) -> None:
    wx = standin.wx
    status, first, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert status == 200 and 7000 < first["expires_in"] <= 7200
    token, _ = await client.login(gw.url, wx, "o-force")
    wx.reject_token(first["access_token"])  # WeChat rejects it, stable_token still hands it out
    wx.add_phone_code("ph-1", openid="o-force")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-1"}, token)
    assert status == 200, doc
    assert wx.calls["stable_token_force"] == 1
    status, second, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert second["access_token"] != first["access_token"] and second["expires_in"] > 7000
    wx.reject_token(second["access_token"])  # again, within 30 s: no second force
    wx.add_phone_code("ph-2", openid="o-force")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-2"}, token)
    assert (status, doc["code"]) == (502, 40001)
    assert wx.calls["stable_token_force"] == 1
    assert json.dumps(doc).find(second["access_token"]) == -1
