"""Several mini programs from one gateway (`wechat.apps`), through a real `wxgated run`
and one WeChat stand-in that knows both appids: each app logs in with its own
credentials and gets tokens with its appid, sessions and access tokens are per app,
`jwt_auth: {apps: [...]}` refuses other apps' tokens, pushes check each app's own token
and EncodingAESKey, and the WeChat metrics carry the app's name."""

from __future__ import annotations

import base64
import os
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.e2e_identity_harness import upstream_app
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.rawhttp import call as raw_call
from tests.support.servers import ThreadedApp
from tests.support.wx_apps_harness import (
    AES_KEYS,
    ENV,
    METRIC,
    PROD,
    PUSH_TOKENS,
    SECRETS,
    STAGING,
    TwoApps,
    claims_of,
    config,
    login,
    new_code,
    plain_push_query,
)
from tests.support.wx_hook_harness import call
from wxgated.wechat.crypto import encrypt_user_data
from wxgated.wechat.push_crypto import aes_key, encrypt_message, msg_signature

HOOK_BODIES = web.AppKey("bodies", list)


def user_service() -> web.Application:
    """The login hook's user service: remembers what it was told, answers a user_id."""

    async def hook(request: web.Request) -> web.Response:
        request.app[HOOK_BODIES].append(await request.json())
        return web.json_response({"user_id": 7})

    app = web.Application()
    app[HOOK_BODIES] = []
    app.router.add_post("/internal/wx-login", hook)
    return app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[GatewayProcess, TwoApps, ThreadedApp]]:
    wx, svc, users = TwoApps(), ThreadedApp(upstream_app()), ThreadedApp(user_service())
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), config(wx.url, svc.url, users.url),
                        env=ENV).start()
    gw.users = users  # type: ignore[attr-defined]
    yield gw, wx, svc
    gw.stop()
    users.stop()
    svc.stop()
    wx.server.stop()


def test_the_login_hook_is_told_the_routes_app(env: Any) -> None:
    gw, wx, _ = env
    token = login(gw.url, wx.staging, "o-hook-kim", "/staging/login-hook")
    assert claims_of(token)["appid"] == STAGING and claims_of(token)["user_id"] == 7
    assert gw.users.runner.app[HOOK_BODIES][-1] == {"openid": "o-hook-kim", "appid": STAGING}


def test_each_app_logs_in_with_its_own_credentials_and_gets_its_appid(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-prod-ann", "/prod/login")
    staging = login(gw.url, wx.staging, "o-stag-ann", "/staging/login")
    assert claims_of(prod)["appid"] == PROD and claims_of(prod)["sub"] == "o-prod-ann"
    assert claims_of(staging)["appid"] == STAGING
    # each code2Session went out with that app's appid and secret
    assert wx.prod.last_query["jscode2session"]["secret"] == SECRETS[PROD]
    assert wx.staging.last_query["jscode2session"]["secret"] == SECRETS[STAGING]
    # a code WeChat issued for prod does not log into staging
    status, doc, _ = call(gw.url + "/staging/login", {"code": new_code(wx.prod, "o-prod-bob")})
    assert (status, doc["code"]) == (401, 40029), doc
    metrics = gw.metrics()
    for app in ("prod", "staging"):
        assert metric_value(metrics, METRIC, api="jscode2session", errcode="0", app=app) >= 1
    assert metric_value(metrics, METRIC, api="jscode2session", errcode="40029",
                        app="staging") == 1
    assert metric_value(metrics, METRIC, api="jscode2session", errcode="40029", app="prod") == 0


def test_sessions_are_separate_per_app(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-same-user", "/prod/login")
    staging = login(gw.url, wx.staging, "o-same-user", "/staging/login")
    for token in (prod, staging):
        assert call(gw.url + "/api/me", token=token, method="GET")[0] == 200
    # a prod token at staging's logout is refused: it names another mini program
    status, doc, _ = call(gw.url + "/staging/logout", token=prod)
    assert (status, doc["msg"]) == (401, "token is for another mini program"), doc
    assert call(gw.url + "/staging/logout", token=staging)[0] == 200
    assert call(gw.url + "/api/me", token=staging, method="GET")[0] == 401
    assert call(gw.url + "/api/me", token=prod, method="GET")[0] == 200  # untouched
    status, doc, _ = call(gw.url + "/prod/refresh", token=prod)
    assert status == 200 and claims_of(doc["data"]["token"])["appid"] == PROD
    assert call(gw.url + "/prod/refresh", token=staging)[0] == 401


def test_jwt_auth_apps_refuses_tokens_of_other_apps(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-prod-carl", "/prod/login")
    staging = login(gw.url, wx.staging, "o-stag-carl", "/staging/login")
    status, doc, _ = call(gw.url + "/prod-api/orders", token=prod, method="GET")
    assert status == 200 and doc["path"] == "/prod-api/orders"
    status, doc, headers = call(gw.url + "/prod-api/orders", token=staging, method="GET")
    assert (status, doc["msg"]) == (401, "token is for another mini program"), doc
    assert headers["www-authenticate"].startswith("Bearer")


def test_access_tokens_are_fetched_per_app_with_its_secret(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-prod-dora", "/prod/login")
    staging = login(gw.url, wx.staging, "o-stag-dora", "/staging/login")
    for _ in range(2):
        assert call(gw.url + "/prod/check", {"content": "hi"}, token=prod)[0] == 200
        assert call(gw.url + "/staging/check", {"content": "hi"}, token=staging)[0] == 200
    # one token per app, each fetched with that app's own appid and secret, each used
    # only for that app's calls (the stand-in accepts a token only for its own appid)
    assert wx.prod.calls["stable_token"] == 1 and wx.staging.calls["stable_token"] == 1
    assert wx.prod.calls["msg_sec_check"] == 2 and wx.staging.calls["msg_sec_check"] == 2
    # a token of the other app is refused before WeChat is called
    assert call(gw.url + "/prod/check", {"content": "hi"}, token=staging)[0] == 401
    assert wx.prod.calls["msg_sec_check"] == 2
    # the admin endpoint hands out each app's token by name (default: the first app)
    for name, ctl, other in (("staging", wx.staging, wx.prod), ("prod", wx.prod, wx.staging)):
        status, doc, _ = call(f"{gw.admin}/-/wechat/access_token?app={name}", method="GET")
        assert status == 200 and ctl.token_ok(doc["access_token"])
        assert not other.token_ok(doc["access_token"])
    status, doc, _ = call(f"{gw.admin}/-/wechat/access_token", method="GET")
    assert status == 200 and wx.prod.token_ok(doc["access_token"])
    assert call(f"{gw.admin}/-/wechat/access_token?app=nope", method="GET")[0] == 404
    metrics = gw.metrics()
    assert metric_value(metrics, METRIC, api="stable_token", errcode="0", app="prod") == 1
    assert metric_value(metrics, METRIC, api="stable_token", errcode="0", app="staging") == 1


def test_the_request_host_picks_the_app_of_a_route_without_one(env: Any) -> None:
    gw, wx, _ = env
    token = login(gw.url, wx.staging, "o-host-eve", "/login",
                  headers={"Host": "staging.example.test"})
    assert claims_of(token)["appid"] == STAGING
    token = login(gw.url, wx.prod, "o-host-eve", "/login", headers={"Host": "prod.example.test:443"})
    assert claims_of(token)["appid"] == PROD
    status, doc, _ = call(gw.url + "/login", {"code": new_code(wx.prod, "o-host-fay")},
                          headers={"Host": "other.example.test"})
    assert status == 404 and doc["msg"] == "no mini program is configured for this host"


def test_push_checks_each_apps_own_token(env: Any) -> None:
    gw, _, _ = env
    q = plain_push_query(PUSH_TOKENS[PROD], "n-prod-1")
    status, body, _ = raw_call(f"{gw.url}/prod/push?{q}")
    assert (status, body) == (200, b"echo-n-prod-1")
    q = plain_push_query(PUSH_TOKENS[PROD], "n-prod-2")  # prod's token at staging's URL
    assert raw_call(f"{gw.url}/staging/push?{q}")[0] == 403
    q = plain_push_query(PUSH_TOKENS[STAGING], "n-stag-1")
    assert raw_call(f"{gw.url}/staging/push?{q}")[:2] == (200, b"echo-n-stag-1")


def _safe_push(gw: GatewayProcess, path: str, appid: str, token: str, key: str,
               nonce: str) -> tuple[int, bytes]:
    enc = encrypt_message(aes_key(key), b'{"MsgType": "event", "Event": "demo"}', appid)
    ts = str(int(time.time()))
    q = urllib.parse.urlencode({"timestamp": ts, "nonce": nonce, "encrypt_type": "aes",
                                "msg_signature": msg_signature(token, ts, nonce, enc)})
    status, body, _ = raw_call(f"{gw.url}{path}?{q}",
                               data=f'{{"ToUserName": "gh_x", "Encrypt": "{enc}"}}'.encode(),
                               headers={"Content-Type": "application/json"})
    return status, body


def test_safe_mode_push_uses_each_apps_aes_key(env: Any) -> None:
    gw, _, _ = env
    assert _safe_push(gw, "/prod/push", PROD, PUSH_TOKENS[PROD], AES_KEYS[PROD],
                      "s-prod-1")[0] == 200
    assert _safe_push(gw, "/staging/push", STAGING, PUSH_TOKENS[STAGING], AES_KEYS[STAGING],
                      "s-stag-1")[0] == 200
    # staging's token with prod's key, then everything of prod's, at staging's URL
    assert _safe_push(gw, "/staging/push", STAGING, PUSH_TOKENS[STAGING], AES_KEYS[PROD],
                      "s-stag-2")[0] == 403
    assert _safe_push(gw, "/staging/push", PROD, PUSH_TOKENS[PROD], AES_KEYS[PROD],
                      "s-stag-3")[0] == 403


def test_a_wrong_secret_fails_only_its_own_app(gateway: Any, env: Any) -> None:
    _, wx, svc = env
    g = gateway(config(wx.url, svc.url), env={**ENV, "WX_STAGING_SECRET": "not-the-secret"})
    status, doc, _ = call(g.url + "/staging/login", {"code": new_code(wx.staging, "o-s-gus")})
    assert (status, doc["code"]) == (502, 40125), doc
    assert claims_of(login(g.url, wx.prod, "o-p-gus", "/prod/login"))["appid"] == PROD
    time.sleep(0.3)
    out = g.stdout() + g.stderr()
    assert "WeChat rejected the AppSecret (40125): check wechat.secret (api jscode2session, " \
        "app staging: its wechat.apps.staging settings" in out, out
    assert "not-the-secret" not in out
    assert SECRETS[PROD] not in out and SECRETS[STAGING] not in out


def test_a_route_behind_jwt_auth_refuses_a_token_of_another_app(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-prod-lea", "/prod/login")
    staging = login(gw.url, wx.staging, "o-stag-lea", "/staging/login")
    wx.staging.add_phone_code("pc-lea", phone="13900001111")
    # jwt_auth lets the prod token through (its session is live); the staging phone
    # action does not act for a prod user with staging's access_token
    status, doc, _ = call(gw.url + "/staging/phone", {"code": "pc-lea"}, token=prod)
    assert (status, doc["msg"]) == (401, "token is for another mini program"), doc
    assert wx.staging.calls["getuserphonenumber"] == 0
    status, doc, _ = call(gw.url + "/staging/phone", {"code": "pc-lea"}, token=staging)
    assert status == 200 and doc["data"]["purePhoneNumber"] == "13900001111"


def test_decrypt_checks_the_watermark_of_the_routes_app(env: Any) -> None:
    gw, wx, _ = env
    code = new_code(wx.staging, "o-stag-max")
    key = wx.staging.codes[code]["session_key"]
    status, doc, _ = call(gw.url + "/staging/login", {"code": code})
    token = doc["data"]["token"]

    def sealed(appid: str) -> dict[str, str]:
        iv = os.urandom(16)
        data = {"openId": "o-stag-max", "nickName": "max",
                "watermark": {"appid": appid, "timestamp": int(time.time())}}
        return {"encryptedData": encrypt_user_data(key, data, iv),
                "iv": base64.b64encode(iv).decode()}

    status, doc, _ = call(gw.url + "/staging/decrypt", sealed(STAGING), token=token)
    assert status == 200 and doc["data"]["nickName"] == "max"
    status, doc, _ = call(gw.url + "/staging/decrypt", sealed(PROD), token=token)
    assert status == 400, doc  # data sealed for the other mini program
