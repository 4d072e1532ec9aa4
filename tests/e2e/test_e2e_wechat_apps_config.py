"""Config errors of `wechat.apps`, each at FILE:LINE:COL through `wxgated check`, and a
broken reload that keeps the old config serving; the single-app form gets an `appid`
claim too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.e2e_identity_harness import APPID, HS_KEYS, StandIn, base_config, upstream_app
from tests.support.servers import ThreadedApp
from tests.support.wx_apps_harness import ENV, PROD, TwoApps, claims_of, config, login
from tests.support.wx_hook_harness import call, line_col, yaml_text

URL = "http://127.0.0.1:1"


def check(tmp: Path, text: str) -> tuple[int, str]:
    """`wxgated check` with the apps' secrets in the environment, as in production."""
    path = tmp / "routes.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **ENV})
    return proc.returncode, proc.stdout + proc.stderr


def _text(edit: Any) -> str:
    cfg = config(URL, URL)
    edit(cfg)
    return yaml_text(cfg)


def _route(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in cfg["routes"] if r["name"] == name)


def _unknown_app(cfg: dict[str, Any]) -> None:
    _route(cfg, "login-staging")["wechat"]["app"] = "stagign"


def _duplicate_appid(cfg: dict[str, Any]) -> None:
    cfg["wechat"]["apps"]["staging"]["appid"] = PROD


def _no_app(cfg: dict[str, Any]) -> None:
    del cfg["wechat"]["app_by_host"]
    del _route(cfg, "logout-staging")["wechat"]["app"]


def _jwt_auth_unknown_app(cfg: dict[str, Any]) -> None:
    _route(cfg, "prod-only")["filters"][0]["jwt_auth"]["apps"] = ["prod", "mini-game"]


def _host_unknown_app(cfg: dict[str, Any]) -> None:
    cfg["wechat"]["app_by_host"]["game.example.test"] = "game"


@pytest.mark.parametrize("edit,needle,message", [
    (_unknown_app, "app: stagign",
     "unknown app 'stagign' (defined in wechat.apps: prod, staging)"),
    (_duplicate_appid, f"appid: {PROD}\n",
     f'app "staging": appid {PROD} is already app "prod"'),
    (_no_app, "action: logout\n",
     "route 'logout-staging' must name its app (app: NAME): wechat.apps has several "
     "(prod, staging) and no app_by_host"),
    (_jwt_auth_unknown_app, "- mini-game", "unknown app 'mini-game'"),
    (_host_unknown_app, "game.example.test: game", 'app_by_host: unknown app "game"'),
])
def test_app_config_errors_name_file_line_col(tmp_path: Path, edit: Any, needle: str,
                                              message: str) -> None:
    text = _text(edit)
    rc, out = check(tmp_path, text)
    assert rc == 1, out
    if needle == f"appid: {PROD}\n":  # the second one (staging's) is the error
        first = text.index(needle)
        line = text[:text.index(needle, first + 1)].count("\n") + 1
        col = len(text.splitlines()[line - 1]) - len(f"appid: {PROD}") + len("appid: ") + 1
    elif needle == "action: logout\n":  # a wechat mapping is reported at its first key
        lines = text.splitlines()
        start = lines.index("- name: logout-staging")
        line, col = lines.index("    action: logout", start) + 1, 5
    else:
        line, col = line_col(text, needle.strip("\n"))
        col += {"app: stagign": len("app: "), "game.example.test: game":
                len("game.example.test: "), "- mini-game": 2}[needle]
    assert f"routes.yaml:{line}:{col}: {message}" in out, out


def test_single_app_keys_beside_apps_are_an_error(tmp_path: Path) -> None:
    text = _text(lambda cfg: cfg["wechat"].update(secret="${WX_PROD_SECRET}"))
    rc, out = check(tmp_path, text)
    line = text.splitlines().index("  secret: ${WX_PROD_SECRET}") + 1  # wechat's own
    col = 3
    assert rc == 1
    assert f"routes.yaml:{line}:{col}: wechat.secret cannot sit beside wechat.apps" in out, out


def test_a_bad_app_on_reload_keeps_the_old_config_serving(gateway: Any) -> None:
    wx, svc = TwoApps(), ThreadedApp(upstream_app())
    try:
        good = config(wx.url, svc.url)
        gw = gateway(good, env=ENV)
        bad = config(wx.url, svc.url)
        _unknown_app(bad)
        gw.write(bad)
        deadline = time.monotonic() + 10
        while "unknown app 'stagign'" not in gw.stdout() + gw.stderr() and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert "unknown app 'stagign'" in gw.stdout() + gw.stderr()
        assert claims_of(login(gw.url, wx.staging, "o-reload", "/staging/login"))["appid"] \
            != PROD
    finally:
        svc.stop()
        wx.server.stop()


def test_the_single_app_form_is_one_app_whose_tokens_carry_its_appid(gateway: Any) -> None:
    standin, svc = StandIn(), ThreadedApp(upstream_app())
    try:
        gw = gateway(base_config(standin.url, svc.url, HS_KEYS))
        code = "single-code-1"
        standin.wx.add_code(code, "o-single")
        status, doc, _ = call(gw.url + "/auth/wx/login", {"code": code})
        assert status == 200
        claims = jwt.decode(doc["data"]["token"], options={"verify_signature": False})
        assert claims["appid"] == APPID
        assert 'app="default"' in gw.metrics()
    finally:
        svc.stop()
        standin.server.stop()


def test_a_bad_app_aes_key_is_reported_without_its_value(tmp_path: Path) -> None:
    bad = "tooShortSecretAesKeyValue"
    text = _text(lambda cfg: cfg["wechat"]["apps"]["staging"].update(push_aes_key=bad))
    rc, out = check(tmp_path, text)
    line, col = line_col(text, f"push_aes_key: {bad}")
    assert rc == 1
    assert f"routes.yaml:{line}:{col + len('push_aes_key: ')}: " \
        "wechat.apps.staging.push_aes_key: invalid value (value hidden)" in out, out
    assert bad not in out
