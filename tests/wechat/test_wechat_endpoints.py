"""The `wechat` terminal, built as the compiler builds it and called with real Requests;
WeChat is the stand-in on a real socket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
import uuid

import pytest
from aiohttp import web

from tests.support.servers import free_port
from tests.support.wechat_standin import make_wechat_app
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.gateway.envelope import error_response
from wxgated.http.message import Body, HTTPError, Request, Response
from wxgated.registry import Registry
from wxgated.state import open_backend
from wxgated.terminals import TERMINALS
from wxgated.wechat import build_services
from wxgated.wechat.crypto import encrypt_user_data, push_signature

APPID, SECRET = "wxendpointapp", "endpoint-app-secret-XYZ"
JWT_SECRET = "jwt-secret-for-endpoint-tests-0123456789"
PUSH_TOKEN = "push-token-abc"


def config(api_base: str, **wechat) -> dict:
    return {
        "state": {"backend": "memory"},
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": api_base,
                   "push_token": PUSH_TOKEN, "retries": 2, "backoff": "10ms", **wechat},
        "jwt": {"issuer": "wxgated", "ttl": "2h",
                "keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]},
    }


class Gateway:
    """The services of one compiled config, and its `wechat:` routes as handlers."""

    def __init__(self, cfg: dict, upstreams: dict | None = None) -> None:
        self.cfg = cfg
        self.state = open_backend(cfg["state"])
        self.services = {"state": self.state, **build_services(cfg, self.state)}
        self.ctx = CompileContext(config=cfg, registry=Registry(), services=self.services,
                                  upstreams=upstreams or {})

    def route(self, value, name: str = "r"):
        route = {"name": name, "match": {"path": "/x"}, "wechat": value}
        self.ctx.route_name, self.ctx.route = name, route
        return TERMINALS["wechat"].build(value, route, self.ctx)

    async def call(self, value, body=None, token: str | None = None, method: str = "POST",
                   query: str = "", headers=None) -> tuple[int, dict | bytes, Response | None]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
        hdrs = list(headers or [])
        if token:
            hdrs.append((b"authorization", b"Bearer " + token.encode()))
        req = Request(method, "/x", query, hdrs, Body.of(raw), trace_id="trace-1",
                      client_ip="127.0.0.1")
        try:
            resp = await self.route(value)(req)
        except HTTPError as err:
            resp = error_response(err, req.trace_id)
        ctype = resp.header(b"content-type") or b""
        doc = json.loads(resp.body) if ctype.startswith(b"application/json") else resp.body
        return resp.status, doc, resp

    async def close(self) -> None:
        await self.services["wechat"].close()
        await self.state.close()


@pytest.fixture
async def env(serve):
    app, ctl = make_wechat_app(APPID, SECRET)
    gw = Gateway(config(await serve(app)))
    yield gw, ctl
    await gw.close()


async def login(gw: Gateway, ctl, openid: str = "o-1", unionid: str | None = "u-1",
                code: str | None = None) -> tuple[str, str]:
    code = code or f"code-{openid}-{os.urandom(3).hex()}"
    key = ctl.add_code(code, openid, unionid=unionid)
    status, doc, _ = await gw.call("login", {"code": code})
    assert status == 200, doc
    return doc["data"]["token"], key


async def test_login_returns_a_bearer_token_and_keeps_the_secret(env) -> None:
    gw, ctl = env
    key = ctl.add_code("c1", "o-1", unionid="u-1")
    status, doc, resp = await gw.call("login", {"code": "c1"})
    assert status == 200 and doc["code"] == 0 and doc["trace_id"] == "trace-1"
    data = doc["data"]
    assert data["token_type"] == "Bearer" and data["expires_in"] == 7200
    assert (data["openid"], data["unionid"]) == ("o-1", "u-1")
    claims = gw.services["jwt"].verify(data["token"])
    assert claims["sub"] == "o-1" and claims["unionid"] == "u-1"
    rec = await gw.services["sessions"].get(claims["sid"])
    assert rec.session_key == key  # kept server-side...
    assert key not in resp.body.decode() and SECRET not in resp.body.decode()  # ...only


@pytest.mark.parametrize("setup, status, code", [
    (lambda ctl: None, 401, 40029),
    (lambda ctl: ctl.blocked_codes.add("c"), 403, 40226),
    (lambda ctl: ctl.fail_next(3), 503, -1),
    (lambda ctl: setattr(ctl, "quota_per_minute", 0), 429, 45011),
])
async def test_login_maps_wechat_errors(env, setup, status, code) -> None:
    gw, ctl = env
    setup(ctl)
    got, doc, resp = await gw.call("login", {"code": "c"})
    assert (got, doc["code"]) == (status, code)
    if status in (429, 503):
        assert resp.header(b"retry-after")


async def test_login_code_reuse_and_bad_bodies(env) -> None:
    gw, ctl = env
    await login(gw, ctl, code="once")
    status, doc, _ = await gw.call("login", {"code": "once"})
    assert (status, doc["code"], doc["msg"]) == (401, 40163, "code already used")
    assert (await gw.call("login", {"nocode": 1}))[:2] == (400, {
        "code": 400, "msg": "code is required", "data": None, "trace_id": "trace-1"})
    assert (await gw.call("login", b"{not json"))[0] == 400


async def test_login_when_wechat_is_unreachable(serve) -> None:
    gw = Gateway(config(f"http://127.0.0.1:{free_port()}", retries=0))
    try:
        status, doc, _ = await gw.call("login", {"code": "c"})
    finally:
        await gw.close()
    assert (status, doc["code"]) == (503, -1)


async def test_decrypt_round_trip_and_each_failure(env) -> None:
    gw, ctl = env
    token, key = await login(gw, ctl)
    iv = os.urandom(16)
    user = {"openId": "o-1", "nickName": "小明",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    enc = encrypt_user_data(key, user, iv)
    iv64 = base64.b64encode(iv).decode()
    status, doc, _ = await gw.call("decrypt", {"encryptedData": enc, "iv": iv64}, token)
    assert status == 200 and doc["data"] == user
    raw = json.dumps({"nickName": "小明"})
    sig = hashlib.sha1((raw + key).encode()).hexdigest()
    ok = {"encryptedData": enc, "iv": iv64, "rawData": raw, "signature": sig}
    assert (await gw.call("decrypt", ok, token))[0] == 200
    cases = {
        "rawData signature mismatch": {**ok, "signature": "0" * 40},
        "iv is not 16 bytes": {"encryptedData": enc, "iv": base64.b64encode(b"short").decode()},
        "bad base64 in iv": {"encryptedData": enc, "iv": "!!!"},
        "watermark appid mismatch": {"encryptedData": encrypt_user_data(
            key, {**user, "watermark": {"appid": "wxother"}}, iv), "iv": iv64},
        "watermark timestamp outside the accepted window (stale data)": {
            "encryptedData": encrypt_user_data(key, {**user, "watermark": {
                "appid": APPID, "timestamp": int(time.time()) - 600}}, iv), "iv": iv64},
        "encryptedData is required": {"iv": iv64},
    }
    for msg, body in cases.items():
        status, doc, _ = await gw.call("decrypt", body, token)
        assert (status, doc["msg"]) == (400, msg)
    status, doc, _ = await gw.call("decrypt", {"encryptedData": enc,
                                                "iv": base64.b64encode(os.urandom(16)).decode()},
                                   token)
    assert (status, doc["msg"]) == (400, "decrypted data is not JSON (wrong iv)")
    other_key = base64.b64encode(os.urandom(16)).decode()  # WeChat's newer session_key
    status, doc, resp = await gw.call("decrypt", {"encryptedData": encrypt_user_data(
        other_key, user, iv), "iv": iv64}, token)
    assert (status, doc["msg"]) == (401, "session_key is out of date: log in again")
    assert (await gw.call("decrypt", {"encryptedData": enc, "iv": iv64}))[1]["msg"] == \
        "missing token"


async def test_logout_kills_the_token_at_once(env) -> None:
    gw, ctl = env
    token, key = await login(gw, ctl)
    iv = os.urandom(16)
    mark = {"watermark": {"appid": APPID, "timestamp": int(time.time())}}
    body = {"encryptedData": encrypt_user_data(key, mark, iv),
            "iv": base64.b64encode(iv).decode()}
    assert (await gw.call("decrypt", body, token))[0] == 200
    assert (await gw.call("logout", None, token))[0] == 200
    status, doc, resp = await gw.call("decrypt", body, token)
    assert (status, doc["msg"]) == (401, "token revoked")
    assert resp.header(b"www-authenticate") == b'Bearer error="invalid_token"'
    assert (await gw.call("refresh", None, token))[1]["msg"] == "token revoked"
    assert (await gw.call("logout", None, token))[0] == 200  # idempotent


async def test_refresh_issues_a_new_token_for_the_same_session(env) -> None:
    gw, ctl = env
    token, _ = await login(gw, ctl)
    await asyncio.sleep(1.05)  # iat has one-second resolution: make the new token differ
    status, doc, _ = await gw.call("refresh", None, token)
    assert status == 200
    new = doc["data"]["token"]
    ring = gw.services["jwt"]
    assert new != token and ring.verify(new)["sid"] == ring.verify(token)["sid"]
    assert doc["data"]["unionid"] == "u-1"


async def test_fifty_concurrent_phone_calls_fetch_the_token_once(env) -> None:
    gw, ctl = env
    token, _ = await login(gw, ctl)
    ctl.latency = 0.05
    for i in range(50):
        ctl.add_phone_code(f"p{i}", f"1380000{i:04d}")
    results = await asyncio.gather(*(gw.call("phone", {"code": f"p{i}"}, token)
                                     for i in range(50)))
    assert [r[0] for r in results] == [200] * 50
    assert {r[1]["data"]["countryCode"] for r in results} == {"86"}  # str and int both → "86"
    assert results[7][1]["data"]["purePhoneNumber"] == "13800000007"
    assert ctl.calls["stable_token"] + ctl.calls["token"] == 1
    ctl.expire_tokens()
    ctl.add_phone_code("again")
    assert (await gw.call("phone", {"code": "again"}, token))[0] == 200
    assert ctl.calls["stable_token"] == 2  # refreshed once after 40001, then retried
    status, doc, _ = await gw.call("phone", {"code": "used-or-unknown"}, token)
    assert (status, doc["code"]) == (400, 40029)


async def test_jwks_publishes_nothing_secret(env) -> None:
    gw, _ = env
    status, doc, resp = await gw.call("jwks", method="GET")
    assert status == 200 and doc == {"keys": []}  # only an HS256 key: nothing public
    assert JWT_SECRET.encode() not in resp.body


def signed_query(token: str = PUSH_TOKEN, echostr: str = "") -> str:
    # A fresh nonce each time: the push action refuses a (timestamp, nonce) seen before.
    ts, nonce = str(int(time.time())), uuid.uuid4().hex
    sig = push_signature(token, ts, nonce)
    q = f"signature={sig}&timestamp={ts}&nonce={nonce}"
    return q + (f"&echostr={echostr}" if echostr else "")


async def test_push_verification_and_unsigned_posts(env) -> None:
    gw, _ = env
    status, body, resp = await gw.call("push", method="GET", query=signed_query(echostr="e123"))
    assert (status, body) == (200, b"e123")
    assert resp.header(b"content-type").startswith(b"text/plain")
    bad = signed_query("wrong-token", echostr="e123")
    assert (await gw.call("push", method="GET", query=bad))[0] == 403
    assert (await gw.call("push", b"<xml/>", query=""))[0] == 403
    assert (await gw.call("push", b"<xml/>", query=signed_query()))[:2] == (200, b"success")


async def test_signed_push_is_forwarded_to_the_upstream(serve) -> None:
    from wxgated.upstream.build import build_upstreams

    got: list[tuple[str, bytes]] = []

    async def sink(request: web.Request) -> web.Response:
        got.append((request.query_string, await request.read()))
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/x", sink)
    base = await serve(app)
    wx_app, _ = make_wechat_app(APPID, SECRET)
    cfg = config(await serve(wx_app))
    registry = Registry()
    ups = build_upstreams({"msg": {"targets": [{"url": base}]}}, registry, {})
    gw = Gateway(cfg, upstreams=ups)
    try:
        q = signed_query()
        status, body, _ = await gw.call({"action": "push", "upstream": "msg"}, b"<xml>hi</xml>",
                                        query=q, headers=[(b"host", b"gw")])
        assert (await gw.call({"action": "push", "upstream": "msg"}, b"<xml/>"))[0] == 403
    finally:
        await gw.close()
        registry.commit()
    assert (status, body) == (200, b"success")
    assert got == [(q, b"<xml>hi</xml>")]  # the unsigned one never arrived


async def test_api_action_adds_the_access_token(env) -> None:
    gw, ctl = env
    value = {"action": "api", "path": "/wxa/msg_sec_check"}
    status, doc, _ = await gw.call(value, {"content": "hello"}, query="access_token=evil&x=1",
                                   headers=[(b"content-type", b"application/json")])
    assert status == 200
    answer = json.loads(doc)  # WeChat's own answer, passed through (text/plain JSON)
    assert answer["result"] == {"suggest": "pass"}
    assert json.loads(answer["echo"]) == {"content": "hello"}
    assert answer["query"] == {"x": "1"}
    assert ctl.token_ok(ctl.last_query["msg_sec_check"]["access_token"])
    ctl.expire_tokens()
    status, doc, _ = await gw.call(value, {"content": "again"})
    assert status == 200 and ctl.calls["msg_sec_check"] == 3  # 40001, refresh, retry


async def test_config_errors(serve) -> None:
    gw = Gateway(config("http://127.0.0.1:1", push_token=""))
    try:
        with pytest.raises(SemanticError, match="push_token"):
            gw.route("push")
        with pytest.raises(SemanticError, match="needs a path"):
            gw.route({"action": "api"})
        with pytest.raises(SemanticError, match="only for action: push"):
            gw.route({"action": "login", "upstream": "x"})
        with pytest.raises(SemanticError, match="body is only for action: api"):
            gw.route({"action": "login", "body": {"openid": "{claim.openid}"}})
        api = {"action": "api", "path": "/wxa/msg_sec_check"}
        with pytest.raises(SemanticError, match="access_token is the gateway's own") as err:
            gw.route({**api, "query": {"access_token": "x"}})
        assert err.value.path == ("query", "access_token")
        with pytest.raises(SemanticError, match=r"use claim, param, query, header") as err:
            gw.route({**api, "body": {"data": [{"v": "{resp.a.b}"}]}})
        assert err.value.path == ("body", "data", 0, "v")
        with pytest.raises(SemanticError, match=r"or \{app.appid\}"):
            gw.route({**api, "body": {"appid": "{app.id"}})
    finally:
        await gw.close()
    gw = Gateway(config("http://127.0.0.1:1"))
    try:
        with pytest.raises(SemanticError, match="unknown upstream"):
            gw.route({"action": "push", "upstream": "nope"})
    finally:
        await gw.close()
    nojwt = {k: v for k, v in config("http://127.0.0.1:1").items() if k != "jwt"}
    gw2 = Gateway(nojwt)
    try:
        with pytest.raises(SemanticError, match="needs a top-level jwt"):
            gw2.route("login")
    finally:
        await gw2.close()


def test_sessions_in_redis_need_an_encryption_key(redis_url: str) -> None:
    cfg = config("http://127.0.0.1:1")
    cfg["state"] = {"backend": "redis", "redis": {"url": redis_url}}
    with pytest.raises(SemanticError) as err:
        build_services(cfg, open_backend(cfg["state"]))
    assert err.value.path == ("state", "encryption_key")
    cfg["state"]["encryption_key"] = "not-a-key"
    with pytest.raises(SemanticError, match="32 bytes"):
        build_services(cfg, open_backend(cfg["state"]))
    cfg["state"]["encryption_key"] = os.urandom(32).hex()
    assert build_services(cfg, open_backend(cfg["state"]))["sessions"].state.name == "redis"
    # memory state but wechat.backend: redis → sessions still go to Redis, key still required
    cfg2 = config("http://127.0.0.1:1", backend="redis")
    cfg2["state"] = {"backend": "memory", "redis": {"url": redis_url}}
    with pytest.raises(SemanticError):
        build_services(cfg2, open_backend(cfg2["state"]))


async def test_no_secret_reaches_a_response_or_a_log(env, caplog) -> None:
    gw, ctl = env
    caplog.set_level(logging.DEBUG)
    token, key = await login(gw, ctl)
    ctl.add_phone_code("p")
    bodies = [(await gw.call("phone", {"code": "p"}, token))[2].body,
              (await gw.call("refresh", None, token))[2].body,
              (await gw.call("login", {"code": "bad"}))[2].body]
    ctl.fail_next(10)
    bodies.append((await gw.call("login", {"code": "busy"}))[2].body)
    access_tokens = list(ctl.tokens)
    for secret in [SECRET, key, JWT_SECRET, *access_tokens]:
        assert all(secret.encode() not in b for b in bodies), secret
        assert secret not in caplog.text
