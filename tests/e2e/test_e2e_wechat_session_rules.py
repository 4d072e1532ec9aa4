"""The rules that tie a token to its session and its session_key, black-box through
`wxgated run` against the WeChat stand-in: a new login rotates the session_key, a refresh
keeps the session alive past its original TTL, a token only acts for its session's own
user, and a rawData signature is checked whenever either half of it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.support.e2e_identity_harness import (
    APPID,
    HS_KEYS,
    JWT_SECRET,
    Client,
    StandIn,
    base_config,
    header_values,
    upstream_app,
)
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp, served
from wxgated.wechat.crypto import encrypt_user_data

SESSION_TTL = 3.0  # seconds; short, so outliving it is a short real wait


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def gw(standin: StandIn, upstream: ThreadedApp,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = base_config(standin.url, upstream.url, HS_KEYS)
    cfg["wechat"]["session_ttl"] = f"{SESSION_TTL:g}s"
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), cfg).start()
    yield proc
    proc.stop()


def sealed(key: str, doc: dict[str, Any]) -> dict[str, str]:
    """encryptedData and iv as WeChat hands them to the mini program."""
    iv = os.urandom(16)
    return {"encryptedData": encrypt_user_data(key, doc, iv),
            "iv": base64.b64encode(iv).decode()}


def profile(openid: str) -> dict[str, Any]:
    return {"openId": openid, "nickName": "N",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}


async def decrypt(client: Client, gw: GatewayProcess, body: dict[str, Any],
                  token: str) -> tuple[int, Any]:
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt", body, token)
    return status, doc


async def test_a_new_login_rotates_the_session_key(gw: GatewayProcess, standin: StandIn,
                                                   client: Client) -> None:
    old_token, old_key = await client.login(gw.url, standin.wx, "o-rotate")
    new_token, new_key = await client.login(gw.url, standin.wx, "o-rotate")
    assert new_key != old_key
    user = profile("o-rotate")
    # WeChat encrypts with the newest session_key; the old session cannot read it
    status, doc = await decrypt(client, gw, sealed(new_key, user), old_token)
    assert (status, doc["msg"]) == (401, "session_key is out of date: log in again")
    status, doc = await decrypt(client, gw, sealed(new_key, user), new_token)
    assert (status, doc["data"]) == (200, user)
    # and data sealed before the new login no longer decrypts for the new session
    status, doc = await decrypt(client, gw, sealed(old_key, user), new_token)
    assert (status, doc["msg"]) == (401, "session_key is out of date: log in again")


async def test_refresh_keeps_the_session_alive_past_its_first_ttl(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    token, _ = await client.login(gw.url, standin.wx, "o-active")
    idle, _ = await client.login(gw.url, standin.wx, "o-idle")
    await asyncio.sleep(SESSION_TTL * 0.6)
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/refresh", token=token)
    assert status == 200, doc
    fresh = doc["data"]["token"]
    await asyncio.sleep(SESSION_TTL * 0.6)  # past the TTL the login gave both sessions
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=fresh)
    assert status == 200, doc
    assert header_values(doc, "x-wx-openid") == ["o-active"]
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=idle)
    assert (status, doc["msg"]) == (401, "token revoked")  # no refresh: the session ended


async def test_a_token_acts_only_for_its_sessions_own_user(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    """A token signed with the gateway's key (say, by a backend that shares the HS256
    secret) naming one user but carrying another user's live sid borrows nothing."""
    wx = standin.wx
    victim, _ = await client.login(gw.url, wx, "o-victim")
    mine, _ = await client.login(gw.url, wx, "o-mallory")
    claims = jwt.decode(mine, options={"verify_signature": False})
    header = jwt.get_unverified_header(mine)
    forged = jwt.encode({**claims, "sub": "o-victim"}, JWT_SECRET, algorithm="HS256",
                        headers={"kid": header["kid"]})
    assert HS_KEYS[0]["kid"] == header["kid"]
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=forged)
    assert (status, doc.get("msg")) == (401, "token revoked"), doc
    wx.add_phone_code("ph-victim", phone="13600009999", openid="o-victim")
    before = wx.calls["getuserphonenumber"]
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone",
                                       {"code": "ph-victim"}, forged)
    assert (status, doc.get("msg")) == (401, "token revoked"), doc
    assert wx.calls["getuserphonenumber"] == before  # WeChat never asked
    # the genuine tokens still work
    for token, openid in ((victim, "o-victim"), (mine, "o-mallory")):
        status, doc, _ = await client.call("GET", gw.url + "/api/me", token=token)
        assert status == 200 and header_values(doc, "x-wx-openid") == [openid]


async def test_half_a_rawdata_signature_is_refused(gw: GatewayProcess, standin: StandIn,
                                                   client: Client) -> None:
    token, key = await client.login(gw.url, standin.wx, "o-signed")
    body = sealed(key, profile("o-signed"))
    raw = json.dumps({"nickName": "N"})
    sig = hashlib.sha1((raw + key).encode()).hexdigest()
    assert (await decrypt(client, gw, {**body, "rawData": raw, "signature": sig}, token))[0] \
        == 200
    for half in ({"rawData": raw}, {"signature": sig}, {"rawData": raw, "signature": None}):
        status, doc = await decrypt(client, gw, {**body, **half}, token)
        assert (status, doc["msg"]) == (400, "rawData signature mismatch"), half
    status, doc = await decrypt(client, gw, body, token)  # neither half: nothing to check
    assert status == 200


async def test_data_decrypted_for_another_user_is_refused(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    token, key = await client.login(gw.url, standin.wx, "o-reader")
    status, doc = await decrypt(client, gw, sealed(key, profile("o-someone-else")), token)
    assert (status, doc["msg"]) == (400, "decrypted data belongs to another user")
    assert (await decrypt(client, gw, sealed(key, profile("o-reader")), token))[0] == 200
