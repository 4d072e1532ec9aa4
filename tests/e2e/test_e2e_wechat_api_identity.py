"""`wechat: api` sets identity fields itself: body/query templates, jwt_auth required.

Black-box through `wxgated run` / `wxgated check` and the WeChat stand-in, which echoes
the body and query it received, so each test sees exactly what WeChat would have seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.e2e_identity_harness import APPID, JWT_SECRET, SECRET, StandIn
from tests.support.gateway import GatewayProcess

AUTH = [{"jwt_auth": {}}]


def api_routes() -> list[dict[str, Any]]:
    return [
        {"name": "login", "match": {"path": "/auth/wx/login", "methods": ["POST"]},
         "wechat": "login"},
        {"name": "sec", "match": {"path": "/wx/sec", "methods": ["POST"]}, "filters": AUTH,
         "wechat": {"action": "api", "path": "/wxa/msg_sec_check",
                    "body": {"version": 2, "openid": "{claim.openid}"},
                    "query": {"appid": "{app.appid}"}}},
        {"name": "send", "match": {"path": "/wx/send", "methods": ["POST"]}, "filters": AUTH,
         "wechat": {"action": "api", "path": "/cgi-bin/message/subscribe/send",
                    "body": {"touser": "{claim.openid}", "lang": "zh_CN"}}},
        {"name": "nick", "match": {"path": "/wx/nick", "methods": ["POST"]}, "filters": AUTH,
         "wechat": {"action": "api", "path": "/wxa/msg_sec_check",
                    "body": {"openid": "{claim.openid}", "nickname": "{claim.nickname}"}}},
    ]


def config(wx_url: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": wx_url},
        "jwt": {"keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]},
        "routes": routes,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, StandIn]]:
    wx = StandIn()
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), config(wx.url, api_routes())).start()
    yield gw, wx
    gw.stop()
    wx.server.stop()


def post(url: str, body: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def login(gw: GatewayProcess, wx: StandIn, openid: str) -> str:
    code = f"code-{openid}-{os.urandom(4).hex()}"
    wx.wx.add_code(code, openid)
    status, doc = post(f"{gw.url}/auth/wx/login", {"code": code})
    assert status == 200, doc
    return str(doc["data"]["token"])


def test_msg_sec_check_sends_the_tokens_openid_not_the_clients(env: Any) -> None:
    gw, wx = env
    token = login(gw, wx, "openid-alice")
    forged = {"version": 1, "openid": "openid-bob", "scene": 2, "content": "hello"}
    status, doc = post(f"{gw.url}/wx/sec?appid=forged&x=1", forged, token)
    assert status == 200 and doc["errcode"] == 0
    assert json.loads(doc["echo"]) == {"version": 2, "openid": "openid-alice", "scene": 2,
                                       "content": "hello"}
    assert doc["query_items"] == [["x", "1"], ["appid", APPID]]  # the client's appid is gone


def test_subscribe_send_goes_to_the_caller_only(env: Any) -> None:
    gw, wx = env
    token = login(gw, wx, "openid-carol")
    msg = {"touser": "openid-victim", "template_id": "T1", "data": {"thing1": {"value": "hi"}}}
    status, doc = post(f"{gw.url}/wx/send", msg, token)
    assert status == 200 and doc["errcode"] == 0
    sent = json.loads(doc["echo"])
    assert sent["touser"] == "openid-carol"
    assert sent["template_id"] == "T1" and sent["data"] == {"thing1": {"value": "hi"}}


def test_claim_values_are_json_strings_never_json_text(env: Any) -> None:
    gw, wx = env
    evil = 'x","touser":"openid-victim'
    token = login(gw, wx, evil)
    status, doc = post(f"{gw.url}/wx/send", {}, token)
    assert status == 200
    assert json.loads(doc["echo"]) == {"touser": evil, "lang": "zh_CN"}


def test_missing_claim_or_token_is_401_and_never_reaches_wechat(env: Any) -> None:
    gw, wx = env
    token = login(gw, wx, "openid-dave")
    before = wx.wx.calls["msg_sec_check"]
    status, doc = post(f"{gw.url}/wx/nick", {"content": "x"}, token)
    assert status == 401 and doc["code"] == 401 and "claim.nickname" in doc["msg"]
    status, doc = post(f"{gw.url}/wx/sec", {"openid": "openid-bob"})
    assert status == 401 and doc["code"] == 401
    assert wx.wx.calls["msg_sec_check"] == before


def check(tmp: Path, routes: list[dict[str, Any]]) -> tuple[int, str, list[str]]:
    path = tmp / "routes.yaml"
    text = yaml.safe_dump({"version": 1, **config("http://127.0.0.1:1", routes)},
                          sort_keys=False)
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr, text.splitlines()


def _line_of(lines: list[str], needle: str) -> int:
    return next(n for n, line in enumerate(lines, 1) if needle in line)


def test_api_route_without_jwt_auth_is_a_config_error_at_its_wechat_key(
        tmp_path: Path) -> None:
    route = {"name": "open", "match": {"path": "/wx/open", "methods": ["POST"]},
             "wechat": {"action": "api", "path": "/wxa/msg_sec_check"}}
    rc, out, lines = check(tmp_path, [route])
    assert rc == 1, out
    wechat_line = [n for n, text in enumerate(lines, 1) if text.strip() == "wechat:"][-1]
    col = lines[wechat_line - 1].index("wechat") + 1
    assert f"routes.yaml:{wechat_line}:{col}: " in out and "needs a jwt_auth filter" in out
    optional = dict(route, filters=[{"jwt_auth": {"optional": True}}])
    rc, out, lines = check(tmp_path, [optional])
    assert rc == 1 and f":{_line_of(lines, 'optional: true')}:" in out
    assert "must not be optional" in out


def test_public_api_route_is_allowed_with_a_warning(tmp_path: Path) -> None:
    route = {"name": "open", "match": {"path": "/wx/open", "methods": ["POST"]},
             "wechat": {"action": "api", "path": "/wxa/msg_sec_check", "public": True}}
    rc, out, lines = check(tmp_path, [route])
    assert rc == 0, out
    assert f"warning: {tmp_path / 'routes.yaml'}:{_line_of(lines, 'public: true')}:" in out
    assert "anyone can call WeChat" in out and "routes.yaml: ok" in out
    rc, out, _ = check(tmp_path, [dict(route, filters=AUTH)])
    assert rc == 0 and "warning" not in out


def test_a_client_body_that_is_not_a_json_object_is_400(env: Any) -> None:
    gw, wx = env
    token = login(gw, wx, "openid-erin")
    before = wx.wx.calls["send"]
    status, doc = post(f"{gw.url}/wx/send", ["touser", "openid-victim"], token)
    assert status == 400 and doc["msg"] == "body must be a JSON object"
    assert wx.wx.calls["send"] == before
