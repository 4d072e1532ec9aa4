"""`wechat: push` in safe mode through a real `wxgated run`: encrypted XML and JSON
pushes reach a real aiohttp upstream as decrypted JSON; forgeries and replays do not."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.e2e_identity_harness import APPID, SECRET
from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import call
from tests.support.servers import ThreadedApp
from wxgated.wechat.push_crypto import aes_key, encrypt_message, msg_signature

TOKEN = "push-token-safe-77"
AES_KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
KEY = aes_key(AES_KEY)
GOT = web.AppKey("got", list)
MSG = ("<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><FromUserName><![CDATA[oUser1]]>"
       "</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
       "<Content><![CDATA[你好 <safe>]]></Content><MsgId>42</MsgId></xml>")


def msg_service() -> web.Application:
    async def inbox(request: web.Request) -> web.Response:
        doc = await request.json()
        request.app[GOT].append(({k.lower(): v for k, v in request.headers.items()}, doc))
        if doc.get("Content") == "fail":
            return web.Response(status=500, text="down")
        return web.Response(text="success")

    app = web.Application()
    app[GOT] = []
    app.router.add_post("/{tail:.*}", inbox)
    return app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Any]]:
    msgs = ThreadedApp(msg_service())
    config = {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": "http://127.0.0.1:9",
                   "push_token": TOKEN, "push_aes_key": "${WX_PUSH_AES_KEY}"},
        "upstreams": {"msg": {"targets": [{"url": msgs.url}]}},
        "routes": [
            {"name": "push", "match": {"path": "/wx/push", "methods": ["GET", "POST"]},
             "wechat": {"action": "push", "upstream": "msg"}},
        ],
    }
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), config,
                        env={"WX_PUSH_AES_KEY": AES_KEY}).start()
    yield gw, msgs
    gw.stop()
    msgs.stop()


_seq = iter(range(10**6))


def query(encrypt: str, timestamp: int | None = None, nonce: str | None = None,
          signature: str | None = None) -> str:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or f"nonce-{next(_seq)}"
    sig = signature or msg_signature(TOKEN, ts, nonce, encrypt)
    return urllib.parse.urlencode({"timestamp": ts, "nonce": nonce, "msg_signature": sig,
                                   "encrypt_type": "aes", "signature": "unused"})


def xml_push(encrypt: str, plain: str = "") -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_safe]]></ToUserName>{plain}"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()


def post(gw: GatewayProcess, q: str, body: bytes) -> tuple[int, bytes]:
    status, data, _ = call(f"{gw.url}/wx/push?{q}", data=body,
                           headers={"Content-Type": "text/xml"})
    return status, data


def got(msgs: Any) -> list[tuple[dict[str, str], dict[str, Any]]]:
    return list(msgs.runner.app[GOT])


def test_xml_push_reaches_the_upstream_decrypted_as_json(env: Any) -> None:
    gw, msgs = env
    enc = encrypt_message(KEY, MSG.encode(), APPID)
    status, body = post(gw, query(enc), xml_push(enc))
    assert (status, body) == (200, b"success")
    headers, doc = got(msgs)[-1]
    assert headers["x-wx-push-format"] == "xml" and headers["x-wx-push-mode"] == "safe"
    assert headers["content-type"].startswith("application/json")
    assert doc == {"ToUserName": "gh_safe", "FromUserName": "oUser1", "CreateTime": "1700000000",
                   "MsgType": "text", "Content": "你好 <safe>", "MsgId": "42", "_raw": MSG}


def test_json_push_reaches_the_upstream_decrypted(env: Any) -> None:
    gw, msgs = env
    message = {"ToUserName": "gh_safe", "MsgType": "event", "Event": "subscribe_msg_popup_event",
               "List": [{"TemplateId": "t1", "SubscribeStatusString": "accept"}]}
    text = json.dumps(message, ensure_ascii=False)
    enc = encrypt_message(KEY, text.encode(), APPID)
    body = json.dumps({"ToUserName": "gh_safe", "Encrypt": enc}).encode()
    status, _ = post(gw, query(enc), body)
    assert status == 200
    headers, doc = got(msgs)[-1]
    assert headers["x-wx-push-format"] == "json"
    assert doc == {**message, "_raw": text}


def test_compatible_mode_forwards_only_the_signed_message(env: Any) -> None:
    gw, msgs = env
    enc = encrypt_message(KEY, MSG.encode(), APPID)
    plain = "<MsgType><![CDATA[forged]]></MsgType><Content><![CDATA[forged]]></Content>"
    status, _ = post(gw, query(enc), xml_push(enc, plain))
    assert status == 200
    assert got(msgs)[-1][1]["Content"] == "你好 <safe>"  # the plain fields are not trusted


def test_forged_wrong_appid_plain_and_garbage_pushes_get_403(env: Any) -> None:
    gw, msgs = env
    before = len(got(msgs))
    enc = encrypt_message(KEY, MSG.encode(), APPID)
    assert post(gw, query(enc, signature="0" * 40), xml_push(enc))[0] == 403
    other = encrypt_message(KEY, MSG.encode(), "wx-other-app")
    status, body = post(gw, query(other), xml_push(other))
    assert status == 403 and b"appid" in body
    assert post(gw, query(""), MSG.encode())[0] == 403  # plain body: no Encrypt
    assert post(gw, query(enc), b"Encrypt=" + enc.encode())[0] == 403
    entity = b'<!DOCTYPE x [<!ENTITY e "x">]><xml><Encrypt>&e;</Encrypt></xml>'
    assert post(gw, query("x"), entity)[0] == 403
    assert len(got(msgs)) == before


def test_replayed_nonce_and_stale_timestamp_get_403(env: Any) -> None:
    gw, msgs = env
    enc = encrypt_message(KEY, MSG.encode(), APPID)
    q = query(enc, nonce="replay-me")
    assert post(gw, q, xml_push(enc))[0] == 200
    before = len(got(msgs))
    status, body = post(gw, q, xml_push(enc))
    assert status == 403 and b"replayed" in body
    status, body = post(gw, query(enc, timestamp=int(time.time()) - 400), xml_push(enc))
    assert status == 403 and b"timestamp" in body
    status, _ = post(gw, query(enc, timestamp=int(time.time()) + 400), xml_push(enc))
    assert status == 403
    assert len(got(msgs)) == before


def test_a_push_the_upstream_failed_may_be_retried(env: Any) -> None:
    gw, msgs = env
    fail = MSG.replace("你好 <safe>", "fail")
    enc = encrypt_message(KEY, fail.encode(), APPID)
    q = query(enc, nonce="retry-me")
    assert post(gw, q, xml_push(enc))[0] == 500
    assert post(gw, q, xml_push(enc))[0] == 500  # WeChat's retry: not refused as a replay
    assert [d["Content"] for _, d in got(msgs)[-2:]] == ["fail", "fail"]


def test_safe_mode_url_verification_answers_the_decrypted_echostr(env: Any) -> None:
    gw, _ = env
    echo = encrypt_message(KEY, b"echo-4711", APPID)
    q = query(echo) + "&" + urllib.parse.urlencode({"echostr": echo})
    status, body, headers = call(f"{gw.url}/wx/push?{q}")
    assert (status, body) == (200, b"echo-4711")
    assert headers["content-type"].startswith("text/plain")
    assert call(f"{gw.url}/wx/push?{q}")[0] == 403  # the same verification again
    bad = query(echo, signature="1" * 40) + "&" + urllib.parse.urlencode({"echostr": echo})
    assert call(f"{gw.url}/wx/push?{bad}")[0] == 403
    other = encrypt_message(KEY, b"echo-1", "wx-other-app")
    q = query(other) + "&" + urllib.parse.urlencode({"echostr": other})
    assert call(f"{gw.url}/wx/push?{q}")[0] == 403
