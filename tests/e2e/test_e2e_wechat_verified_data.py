"""Verified data reaches backends, black-box through `wxgated run`: `phone` and `decrypt`
with `upstream:` POST what the gateway verified to a real backend (which records it),
the client gets the backend's answer, and `store_phone` puts X-WX-Phone on later
jwt_auth requests."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e_identity_harness import APPID, StandIn
from tests.support.gateway import GatewayProcess
from tests.support.user_service import REFUSED_PHONE, TEXT_PHONE, UserService
from tests.support.wx_hook_harness import (
    call,
    check,
    config,
    line_col,
    new_code,
    running,
    yaml_text,
)
from wxgated.wechat.crypto import encrypt_user_data


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[GatewayProcess, StandIn, UserService]]:
    yield from running(tmp_path_factory)


def login(gw: GatewayProcess, wx: StandIn, openid: str,
          unionid: str | None = None) -> tuple[str, str]:
    """(token, session_key) from a plain login (no hook)."""
    code = new_code(wx.wx, openid, unionid)
    key = wx.wx.codes[code]["session_key"]
    status, doc, _ = call(gw.url + "/auth/wx/plain-login", {"code": code})
    assert status == 200, doc
    return doc["data"]["token"], key


def phone_code(wx: StandIn, openid: str, phone: str) -> str:
    code = f"phone-{os.urandom(4).hex()}"
    wx.wx.add_phone_code(code, phone=phone, openid=openid)
    return code


def whoami(gw: GatewayProcess, token: str, **headers: str) -> dict[str, list[str]]:
    status, doc, _ = call(gw.url + "/api/me", token=token, method="GET", headers=headers)
    assert status == 200, doc
    out: dict[str, list[str]] = {}
    for k, v in doc["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_phone_result_goes_to_the_backend_and_the_client_gets_its_answer(env: Any) -> None:
    gw, wx, users = env
    token, key = login(gw, wx, "o-alice", unionid="u-alice")
    code = phone_code(wx, "o-alice", "13800138000")
    status, doc, headers = call(gw.url + "/auth/wx/phone-full", {"code": code}, token)
    assert (status, doc) == (201, {"user_id": 42, "bound": True, "internal_note": "vip"})
    assert headers["content-type"].startswith("application/json")
    seen = users.last("/internal/phone")
    sent = seen.json()
    assert set(sent) == {"phoneNumber", "purePhoneNumber", "countryCode", "watermark"}
    assert (sent["purePhoneNumber"], str(sent["countryCode"])) == ("13800138000", "86")
    assert sent["watermark"]["appid"] == APPID
    assert seen.headers["x-wx-openid"] == "o-alice"
    assert seen.headers["x-wx-unionid"] == "u-alice"
    assert seen.headers["content-type"] == "application/json"
    assert "x-wx-phone" not in seen.headers  # nothing stored yet
    assert "authorization" not in seen.headers  # the client's token stays at the gateway
    assert key not in seen.body.decode() and all(key not in v for v in seen.headers.values())


def test_respond_gives_the_client_only_the_chosen_fields(env: Any) -> None:
    gw, wx, users = env
    token, _ = login(gw, wx, "o-bob")
    code = phone_code(wx, "o-bob", "13800000001")
    status, doc, _ = call(gw.url + "/auth/wx/phone", {"code": code}, token)
    assert (status, doc) == (201, {"user_id": 42, "bound": True})
    assert users.last("/internal/phone").json()["purePhoneNumber"] == "13800000001"


def test_store_phone_sends_x_wx_phone_on_later_requests(env: Any) -> None:
    gw, wx, _ = env
    token, _ = login(gw, wx, "o-carol")
    assert whoami(gw, token, **{"X-WX-Phone": "+10000000000"}).get("x-wx-phone") is None
    code = phone_code(wx, "o-carol", "13800000002")
    status, _, _ = call(gw.url + "/auth/wx/phone", {"code": code}, token)
    assert status == 201
    seen = whoami(gw, token, **{"X-WX-Phone": "+10000000000"})  # the client's is dropped
    assert seen["x-wx-phone"] == ["+8613800000002"]
    # a refreshed token keeps the session, and so the number
    status, doc, _ = call(gw.url + "/auth/wx/refresh", token=token)
    assert status == 200
    assert whoami(gw, doc["data"]["token"])["x-wx-phone"] == ["+8613800000002"]
    # a new login is a new session: no number until phone runs again
    token2, _ = login(gw, wx, "o-carol")
    assert "x-wx-phone" not in whoami(gw, token2)


def test_a_number_the_backend_refused_is_not_stored(env: Any) -> None:
    gw, wx, _ = env
    token, _ = login(gw, wx, "o-dave")
    code = phone_code(wx, "o-dave", REFUSED_PHONE)
    status, doc, _ = call(gw.url + "/auth/wx/phone", {"code": code}, token)
    assert (status, doc) == (409, {})  # the backend's status; respond keeps only its fields
    assert "x-wx-phone" not in whoami(gw, token)


def test_store_phone_without_a_backend_answers_the_phone_info(env: Any) -> None:
    gw, wx, users = env
    token, _ = login(gw, wx, "o-erin")
    before = users.count("/internal/phone")
    code = phone_code(wx, "o-erin", "13800000003")
    status, doc, _ = call(gw.url + "/auth/wx/phone-store", {"code": code}, token)
    assert status == 200 and doc["data"]["purePhoneNumber"] == "13800000003"
    assert users.count("/internal/phone") == before
    assert whoami(gw, token)["x-wx-phone"] == ["+8613800000003"]


def test_backend_down_is_503_and_a_non_json_answer_502(env: Any) -> None:
    gw, wx, _ = env
    token, _ = login(gw, wx, "o-frank")
    code = phone_code(wx, "o-frank", "13800000004")
    status, doc, headers = call(gw.url + "/auth/wx/phone-down", {"code": code}, token)
    assert (status, doc["code"], doc["data"]) == (503, 503, None), doc
    assert doc["msg"].startswith("backend unavailable") and doc["trace_id"]
    assert headers["retry-after"] == "1"
    code = phone_code(wx, "o-frank", TEXT_PHONE)
    status, doc, _ = call(gw.url + "/auth/wx/phone", {"code": code}, token)
    assert (status, doc["code"], doc["msg"]) == (502, 502, "backend answered badly: not JSON")
    assert "x-wx-phone" not in whoami(gw, token)


def test_a_bad_phone_code_never_reaches_the_backend(env: Any) -> None:
    gw, wx, users = env
    token, _ = login(gw, wx, "o-grace")
    before = users.count("/internal/phone")
    status, doc, _ = call(gw.url + "/auth/wx/phone-full", {"code": "no-such-code"}, token)
    assert (status, doc["code"]) == (400, 40029)
    status, doc, _ = call(gw.url + "/auth/wx/phone-full", {"code": "x"})
    assert status == 401
    assert users.count("/internal/phone") == before


def test_decrypted_data_goes_to_the_backend(env: Any) -> None:
    gw, wx, users = env
    token, key = login(gw, wx, "o-heidi", unionid="u-heidi")
    user = {"openId": "o-heidi", "nickName": "Heidi", "unionId": "u-heidi",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    iv = os.urandom(16)
    body = {"encryptedData": encrypt_user_data(key, user, iv),
            "iv": base64.b64encode(iv).decode()}
    status, doc, _ = call(gw.url + "/auth/wx/profile", body, token)
    assert (status, doc) == (200, {"saved": True, "nickName": "Heidi"})
    seen = users.last("/internal/profile")
    assert seen.json() == user
    assert seen.headers["x-wx-openid"] == "o-heidi"
    assert seen.headers["x-wx-unionid"] == "u-heidi"
    # data encrypted for another user is refused before the backend hears of it
    before = users.count("/internal/profile")
    iv = os.urandom(16)
    other = {"encryptedData": encrypt_user_data(key, {**user, "openId": "o-mallory"}, iv),
             "iv": base64.b64encode(iv).decode()}
    status, doc, _ = call(gw.url + "/auth/wx/profile", other, token)
    assert status == 400 and users.count("/internal/profile") == before


def _cfg(wechat: dict[str, Any]) -> str:
    cfg = config("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
    cfg["routes"] = [{"name": "phone", "match": {"path": "/auth/wx/phone"},
                      "wechat": wechat}]
    return yaml_text(cfg)


@pytest.mark.parametrize("wechat,needle,msg", [
    ({"action": "phone", "upstream": "users"}, "upstream: users",
     "upstream needs a path"),
    ({"action": "decrypt", "path": "/internal/profile"}, "path: /internal",
     "path needs an upstream"),
    ({"action": "decrypt", "upstream": "users", "path": "/p", "store_phone": True},
     "store_phone: true", "store_phone is only for action: phone"),
    ({"action": "phone", "upstream": "nope", "path": "/p"}, "upstream: nope",
     'unknown upstream "nope"'),
])
def test_config_errors_name_file_line_col(tmp_path: Path, wechat: dict[str, Any], needle: str,
                                          msg: str) -> None:
    text = _cfg(wechat)
    rc, out = check(tmp_path, text)
    line, _ = line_col(text, needle)
    assert rc == 1, out
    assert f"routes.yaml:{line}:" in out and msg in out, out
