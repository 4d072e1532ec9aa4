"""The login hook, black-box through `wxgated run`: a real user service (recording what
it got) vouches for the user, its fields become claims and claim headers, survive a
refresh, and every way the hook can fail ends the login with no token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.e2e_identity_harness import APPID, JWT_SECRET, StandIn
from tests.support.gateway import GatewayProcess
from tests.support.user_service import UserService
from tests.support.wx_hook_harness import (
    call,
    check,
    config,
    line_col,
    new_code,
    running,
    yaml_text,
)

HOOK_PATH = "/internal/wx-login"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[GatewayProcess, StandIn, UserService]]:
    yield from running(tmp_path_factory)


def login(gw: GatewayProcess, wx: StandIn, openid: str, unionid: str | None = None,
          path: str = "/auth/wx/login") -> tuple[int, Any, dict[str, str]]:
    return call(gw.url + path, {"code": new_code(wx.wx, openid, unionid)})


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer="wxgated"))


def echoed(doc: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in doc["headers"] if k == name]


def test_hook_gets_the_identity_and_its_fields_become_claims_and_headers(env: Any) -> None:
    gw, wx, users = env
    status, doc, _ = login(gw, wx, "ok-alice", unionid="u-alice")
    assert status == 200, doc
    seen = users.last(HOOK_PATH)
    assert seen.json() == {"openid": "ok-alice", "unionid": "u-alice", "appid": APPID}
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-wx-openid"] == "ok-alice"
    assert seen.headers["x-wx-unionid"] == "u-alice"
    assert seen.headers["x-trace-id"] == doc["trace_id"]
    session_key = wx.wx.codes[next(c for c in wx.wx.codes if "ok-alice" in c)]["session_key"]
    assert session_key not in seen.body.decode() and \
        all(session_key not in v for v in seen.headers.values())
    token = doc["data"]["token"]
    claims = claims_of(token)
    assert (claims["user_id"], claims["roles"], claims["level"]) == (42, ["member", "editor"], 3)
    assert claims["sub"] == "ok-alice" and "nickname" not in claims  # only the chosen fields
    status, echo, _ = call(gw.url + "/api/me", token=token, method="GET")
    assert status == 200
    assert echoed(echo, "x-user-id") == ["42"]
    assert echoed(echo, "x-user-roles") == ["member,editor"]
    assert echoed(echo, "x-user-level") == ["3"]
    assert echoed(echo, "x-wx-openid") == ["ok-alice"]


def test_a_field_the_answer_lacks_is_a_claim_the_token_lacks(env: Any) -> None:
    gw, wx, _ = env
    status, doc, _ = login(gw, wx, "new-bob")
    assert status == 200, doc
    claims = claims_of(doc["data"]["token"])
    assert not {"user_id", "roles", "level", "nickname"} & set(claims)
    status, echo, _ = call(gw.url + "/api/me", token=doc["data"]["token"], method="GET")
    assert status == 200 and echoed(echo, "x-user-id") == []


def test_hook_claims_survive_refresh_from_the_session_not_the_token(env: Any) -> None:
    gw, wx, _ = env
    status, doc, _ = login(gw, wx, "ok-carol")
    assert status == 200, doc
    old = claims_of(doc["data"]["token"])
    # a token signed with the gateway's key (a stand-in for a leaked older token) that
    # names the same live session but other claims: refresh re-issues the session's
    forged = jwt.encode({**old, "user_id": 1, "roles": ["admin"], "iat": int(time.time())},
                        JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    status, doc, _ = call(gw.url + "/auth/wx/refresh", token=forged)
    assert status == 200, doc
    new = claims_of(doc["data"]["token"])
    assert (new["user_id"], new["roles"], new["level"]) == (42, ["member", "editor"], 3)
    assert new["sid"] == old["sid"]
    status, echo, _ = call(gw.url + "/api/me", token=doc["data"]["token"], method="GET")
    assert status == 200 and echoed(echo, "x-user-id") == ["42"]


def _assert_no_token(status: int, doc: Any, want: int, msg: str) -> None:
    assert status == want, doc
    assert doc["code"] == want and doc["data"] is None and doc["trace_id"]
    assert doc["msg"].startswith(msg), doc["msg"]


def test_hook_unreachable_is_503_with_no_token(env: Any) -> None:
    gw, wx, users = env
    before = users.count(HOOK_PATH)
    status, doc, headers = login(gw, wx, "ok-dave", path="/auth/wx/login-down")
    _assert_no_token(status, doc, 503, "login hook unavailable")
    assert headers["retry-after"] == "1"
    assert users.count(HOOK_PATH) == before
    assert doc["trace_id"] in gw.stdout() + gw.stderr()  # the operator can find why


def test_hook_timeout_is_503_with_no_token(env: Any) -> None:
    gw, wx, _ = env
    started = time.monotonic()
    status, doc, _ = login(gw, wx, "slow-erin")
    _assert_no_token(status, doc, 503, "login hook unavailable: timed out after 0.3s")
    assert time.monotonic() - started < 1.4  # the login did not wait for the slow answer


@pytest.mark.parametrize("openid,why", [
    ("err500-frank", "HTTP 500"),
    ("html-grace", "not JSON"),
    ("obj-heidi", "user_id is not a string, number, boolean or list of strings"),
])
def test_hook_bad_answers_are_502_with_no_token(env: Any, openid: str, why: str) -> None:
    gw, wx, _ = env
    status, doc, _ = login(gw, wx, openid)
    _assert_no_token(status, doc, 502, f"login hook answered badly: {why}")


def test_a_plain_login_route_beside_a_hooked_one_is_unchanged(env: Any) -> None:
    gw, wx, users = env
    before = users.count(HOOK_PATH)
    status, doc, _ = login(gw, wx, "err500-ivan", path="/auth/wx/plain-login")
    assert status == 200 and "user_id" not in claims_of(doc["data"]["token"])
    assert users.count(HOOK_PATH) == before


def _hook_config(claims: Any) -> str:
    cfg = config("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
    hook = {"upstream": "users", "path": "/internal/wx-login", "claims": claims}
    cfg["routes"] = [{"name": "login", "match": {"path": "/auth/wx/login"},
                      "wechat": {"action": "login", "hook": hook}}]
    return yaml_text(cfg)


@pytest.mark.parametrize("claims,needle", [
    ({"user_id": "user_id", "sub": "user_id"}, "sub:"),
    (["user_id", "openid"], "- openid"),
])
def test_a_reserved_claim_name_is_a_config_error_at_its_key(
        tmp_path: Path, claims: Any, needle: str) -> None:
    text = _hook_config(claims)
    rc, out = check(tmp_path, text)
    line, col = line_col(text, needle)
    if needle.startswith("- "):
        col += 2  # a list item is reported at the item
    assert rc == 1, out
    name = needle.strip("-: ")
    assert f"routes.yaml:{line}:{col}: route \"login\": claim '{name}' is reserved" in out, out


def test_a_reserved_claim_on_reload_keeps_the_old_config_serving(
        env: Any, tmp_path: Path) -> None:
    gw, wx, _ = env
    good = dict(gw.config)
    bad_routes = [dict(r) for r in good["routes"]]
    bad_routes[0] = {**bad_routes[0], "wechat": {
        "action": "login", "hook": {**bad_routes[0]["wechat"]["hook"],
                                    "claims": {"sub": "user_id"}}}}
    gw.write({**good, "routes": bad_routes})
    try:
        deadline = time.monotonic() + 10
        while "is reserved" not in gw.stdout() + gw.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "claim 'sub' is reserved" in gw.stdout() + gw.stderr()
        status, doc, _ = login(gw, wx, "ok-judy")
        assert status == 200 and claims_of(doc["data"]["token"])["sub"] == "ok-judy"
    finally:
        gw.write(good)
