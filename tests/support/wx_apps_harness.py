"""Shared pieces of the several-mini-programs black-box tests (test_e2e_wechat_apps*.py):
one WeChat stand-in serving two appids, a `wechat.apps` gateway config with a route set
per app, and helpers to log in and to read tokens."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from typing import Any

import jwt

from tests.support.servers import ThreadedApp
from tests.support.wechat_standin import Control, make_wechat_apps
from tests.support.wx_hook_harness import call

PROD, STAGING = "wxappsprod000001", "wxappsstaging002"
SECRETS = {PROD: "AppSecret-prod-7c1e5a93d2b84f60", STAGING: "AppSecret-staging-2f9d0b6e41a7c3"}
PUSH_TOKENS = {PROD: "push-token-prod-11", STAGING: "push-token-staging-22"}
AES_KEYS = {PROD: "ProdProdProdProdProdProdProdProdProdProd012",
            STAGING: "StagStagStagStagStagStagStagStagStagStag345"}
JWT_SECRET = "jwt-hs256-secret-for-apps-e2e-0123456789abc"
ENV = {"WX_PROD_SECRET": SECRETS[PROD], "WX_STAGING_SECRET": SECRETS[STAGING],
       "WX_PROD_AES_KEY": AES_KEYS[PROD], "WX_STAGING_AES_KEY": AES_KEYS[STAGING]}
HOSTS = {"prod.example.test": "prod", "staging.example.test": "staging"}
METRIC = "wxgated_wechat_api_requests_total"


class TwoApps:
    """One WeChat that knows both appids, served from its own thread."""

    def __init__(self) -> None:
        app, self.ctls = make_wechat_apps(SECRETS)
        self.server = ThreadedApp(app)
        self.url = self.server.url

    @property
    def prod(self) -> Control:
        return self.ctls[PROD]

    @property
    def staging(self) -> Control:
        return self.ctls[STAGING]


def _wx_route(name: str, path: str, wechat: dict[str, Any], methods: list[str] | None = None,
              auth: bool = False) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name, "match": {"path": path,
                                                     "methods": methods or ["POST"]},
                             "wechat": wechat}
    if auth:
        route["filters"] = [{"jwt_auth": {}}]
    return route


def routes() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for app in ("prod", "staging"):
        out += [
            _wx_route(f"login-{app}", f"/{app}/login", {"action": "login", "app": app}),
            _wx_route(f"logout-{app}", f"/{app}/logout", {"action": "logout", "app": app}),
            _wx_route(f"refresh-{app}", f"/{app}/refresh", {"action": "refresh", "app": app}),
            _wx_route(f"check-{app}", f"/{app}/check",
                      {"action": "api", "app": app, "path": "/wxa/msg_sec_check",
                       "body": {"version": 2, "openid": "{claim.openid}"}}, auth=True),
            _wx_route(f"push-{app}", f"/{app}/push",
                      {"action": "push", "app": app, "upstream": "svc"}, ["GET", "POST"]),
        ]
    hook = {"upstream": "users", "path": "/internal/wx-login", "claims": ["user_id"]}
    out += [
        _wx_route("login-by-host", "/login", {"action": "login"}),  # the Host picks the app
        _wx_route("decrypt-staging", "/staging/decrypt", {"action": "decrypt", "app": "staging"}),
        _wx_route("phone-staging", "/staging/phone", {"action": "phone", "app": "staging"},
                  auth=True),
        _wx_route("login-hook-staging", "/staging/login-hook",
                  {"action": "login", "app": "staging", "hook": hook}),
        {"name": "prod-only", "match": {"path": "/prod-api/*rest"},
         "filters": [{"jwt_auth": {"apps": ["prod"]}}], "upstream": "svc"},
        {"name": "any-app", "match": {"path": "/api/*rest"},
         "filters": [{"jwt_auth": {}}], "upstream": "svc"},
    ]
    return out


def config(wx_url: str, svc_url: str, users_url: str | None = None) -> dict[str, Any]:
    return {
        "wechat": {
            "api_base": wx_url, "retries": 0,
            "apps": {
                "prod": {"appid": PROD, "secret": "${WX_PROD_SECRET}",
                         "push_token": PUSH_TOKENS[PROD], "push_aes_key": "${WX_PROD_AES_KEY}"},
                "staging": {"appid": STAGING, "secret": "${WX_STAGING_SECRET}",
                            "push_token": PUSH_TOKENS[STAGING],
                            "push_aes_key": "${WX_STAGING_AES_KEY}", "session_ttl": "10m"},
            },
            "app_by_host": dict(HOSTS),
        },
        "jwt": {"keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]},
        "upstreams": {"svc": {"targets": [{"url": svc_url}]},
                      "users": {"targets": [{"url": users_url or svc_url}]}},
        "routes": routes(),
    }


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer="wxgated"))


def new_code(ctl: Control, openid: str) -> str:
    code = f"code-{openid}-{os.urandom(4).hex()}"
    ctl.add_code(code, openid)
    return code


def login(base: str, ctl: Control, openid: str, path: str,
          headers: dict[str, str] | None = None) -> str:
    status, doc, _ = call(base + path, {"code": new_code(ctl, openid)}, headers=headers)
    assert status == 200, doc
    return str(doc["data"]["token"])


def plain_push_query(token: str, nonce: str) -> str:
    ts = str(int(time.time()))
    sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
    return urllib.parse.urlencode({"signature": sig, "timestamp": ts, "nonce": nonce,
                                   "echostr": f"echo-{nonce}"})
