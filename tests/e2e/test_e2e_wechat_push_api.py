"""`wechat: push` and `wechat: api` through a real `wxgated run` and the WeChat stand-in."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.e2e_identity_harness import APPID, JWT_SECRET, SECRET, StandIn
from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import call
from tests.support.servers import ThreadedApp

PUSH_TOKEN = "push-token-e2e-42"
GOT = web.AppKey("got", list)


def msg_service() -> web.Application:
    async def inbox(request: web.Request) -> web.Response:
        request.app[GOT].append((await request.read()).decode())
        return web.Response(text="success")

    app = web.Application()
    app[GOT] = []
    app.router.add_post("/{tail:.*}", inbox)
    return app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Any, Any]]:
    wx = StandIn()
    msgs = ThreadedApp(msg_service())
    config = {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": wx.url,
                   "push_token": PUSH_TOKEN},
        "jwt": {"keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]},
        "upstreams": {"msg": {"targets": [{"url": msgs.url}]}},
        "routes": [
            {"name": "push", "match": {"path": "/wx/push", "methods": ["GET", "POST"]},
             "wechat": {"action": "push", "upstream": "msg"}},
            {"name": "check", "match": {"path": "/wx/check", "methods": ["POST"]},
             # public: this test is about the access_token, not the caller's identity
             "wechat": {"action": "api", "path": "/wxa/msg_sec_check", "public": True}},
        ],
    }
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield gw, wx, msgs
    gw.stop()
    msgs.stop()
    wx.server.stop()


def signed(timestamp: str | None = None, nonce: str = "n0nce") -> dict[str, str]:
    # A current timestamp: wechat.push_max_age (default 5m) refuses older pushes.
    timestamp = timestamp or str(int(time.time()))
    sig = hashlib.sha1("".join(sorted([PUSH_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": sig, "timestamp": timestamp, "nonce": nonce}


def test_push_url_verification_echoes_echostr(env: Any) -> None:
    gw, _, _ = env
    q = urllib.parse.urlencode({**signed(), "echostr": "echo-123"})
    status, body, headers = call(f"{gw.url}/wx/push?{q}")
    assert status == 200 and body == b"echo-123"
    assert headers["content-type"].startswith("text/plain")


def test_unsigned_or_badly_signed_pushes_get_403(env: Any) -> None:
    gw, _, msgs = env
    before = len(msgs.runner.app[GOT])
    status, body, _ = call(f"{gw.url}/wx/push?echostr=x")
    assert status == 403 and json.loads(body)["code"] == 403
    bad = urllib.parse.urlencode({**signed(), "signature": "0" * 40})
    status, _, _ = call(f"{gw.url}/wx/push?{bad}", data=b"<xml>forged</xml>")
    assert status == 403
    assert len(msgs.runner.app[GOT]) == before  # nothing forged reached the service


def test_signed_push_is_forwarded_to_the_upstream(env: Any) -> None:
    gw, _, msgs = env
    q = urllib.parse.urlencode(signed(nonce="other"))
    status, body, _ = call(f"{gw.url}/wx/push?{q}", data=b"<xml><Content>hi</Content></xml>",
                           headers={"Content-Type": "text/xml"})
    assert status == 200 and body == b"success"
    assert msgs.runner.app[GOT][-1] == "<xml><Content>hi</Content></xml>"


def test_api_terminal_adds_the_central_access_token(env: Any) -> None:
    gw, wx, _ = env
    status, body, _ = call(f"{gw.url}/wx/check?access_token=client-forged&x=1",
                           data=json.dumps({"content": "hello"}).encode(),
                           headers={"Content-Type": "application/json"})
    doc = json.loads(body)
    assert status == 200 and doc["errcode"] == 0
    assert json.loads(doc["echo"]) == {"content": "hello"}
    assert doc["query"] == {"x": "1"}  # the client's access_token never reaches WeChat
    fetched = wx.wx.calls["stable_token"] + wx.wx.calls["token"]
    wx.wx.expire_tokens()  # WeChat now answers 40001: one refresh, then the retry
    status, body, _ = call(f"{gw.url}/wx/check", data=b"{}",
                           headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["errcode"] == 0
    assert wx.wx.calls["stable_token"] + wx.wx.calls["token"] == fetched + 1


def test_a_public_api_route_is_logged_as_a_warning_at_start(env: Any) -> None:
    gw, _, _ = env
    out = gw.stdout() + gw.stderr()
    assert 'route "check": wechat: api is public' in out


def test_plain_push_replay_and_stale_timestamp_get_403(env: Any) -> None:
    gw, _, msgs = env
    q = urllib.parse.urlencode(signed(nonce="replay-plain"))
    assert call(f"{gw.url}/wx/push?{q}", data=b"<xml><A>1</A></xml>")[0] == 200
    before = len(msgs.runner.app[GOT])
    status, body, _ = call(f"{gw.url}/wx/push?{q}", data=b"<xml><A>1</A></xml>")
    assert status == 403 and b"replayed" in body
    stale = urllib.parse.urlencode(signed(str(int(time.time()) - 301), nonce="stale-plain"))
    status, body, _ = call(f"{gw.url}/wx/push?{stale}", data=b"<xml><A>2</A></xml>")
    assert status == 403 and b"timestamp" in body
    assert len(msgs.runner.app[GOT]) == before
