"""Shared pieces of the issue-3 black-box tests (test_e2e_identity*.py): the WeChat
stand-in on its own thread, an echoing upstream, the gateway config, a recording client."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.servers import ThreadedApp
from tests.support.wechat_standin import Control, make_wechat_app

APPID = "wxe2eidentity"
SECRET = "AppSecret-e2e-9f8e7d6c5b4a39281706"
JWT_SECRET = "jwt-hs256-secret-for-e2e-identity-0123456789"

class StandIn:
    """The WeChat stand-in served from its own thread (outlives any test's loop)."""

    def __init__(self) -> None:
        app, self.wx = make_wechat_app(APPID, SECRET)
        self.server = ThreadedApp(app)
        self.url = self.server.url


def upstream_app() -> web.Application:
    """Echoes every header it received (all values, in order) and the path."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path,
                                  "headers": [[k.lower(), v] for k, v in request.headers.items()]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def header_values(doc: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in doc["headers"] if k == name]


def routes() -> list[dict[str, Any]]:
    auth = [("login", "login"), ("decrypt", "decrypt"), ("phone", "phone"),
            ("logout", "logout"), ("refresh", "refresh")]
    out: list[dict[str, Any]] = [
        {"name": name, "match": {"path": f"/auth/wx/{name}", "methods": ["POST"]},
         "wechat": action} for name, action in auth]
    out += [
        {"name": "jwks", "match": {"path": "/.well-known/jwks.json", "methods": ["GET"]},
         "wechat": "jwks"},
        {"name": "api", "match": {"path": "/api/*rest"}, "filters": [{"jwt_auth": {}}],
         "upstream": "svc"},
        {"name": "pub", "match": {"path": "/pub/*rest"}, "upstream": "svc"},
    ]
    return out


def base_config(wx_url: str, up_url: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": wx_url,
                   "retries": 2, "backoff": "10ms"},
        "jwt": {"issuer": "wxgated", "ttl": "2h", "keys": keys},
        "upstreams": {"svc": {"targets": [{"url": up_url}]}},
        "routes": routes(),
    }


HS_KEYS = [{"kid": "hs1", "alg": "HS256", "secret": JWT_SECRET}]


class Client:
    """aiohttp client that remembers every raw response, for the no-secrets check."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.s = session
        self.seen: list[bytes] = []

    async def call(self, method: str, url: str, body: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        async with self.s.request(method, url, data=data, headers=hdrs) as r:
            raw = await r.read()
            self.seen.append(b"\n".join(k + b": " + v for k, v in r.raw_headers))
            self.seen.append(raw)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = raw
            return r.status, doc, r.headers

    async def login(self, base: str, wx: Control, openid: str,
                    unionid: str | None = None) -> tuple[str, str]:
        """(token, session_key WeChat handed out for this login)."""
        code = f"code-{openid}-{os.urandom(4).hex()}"
        key = wx.add_code(code, openid, unionid=unionid)
        status, doc, _ = await self.call("POST", base + "/auth/wx/login", {"code": code})
        assert status == 200, doc
        assert doc["code"] == 0 and doc["data"]["openid"] == openid
        return doc["data"]["token"], key


def secret_forms(secret: str) -> set[str]:
    """The exact string and the shapes it takes in URLs and JSON."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1]}


def assert_no_secrets(secrets: list[str], outputs: list[str], seen: list[bytes]) -> None:
    for secret in secrets:
        for form in secret_forms(secret):
            for text in outputs:
                assert form not in text, f"secret {secret[:6]}… in gateway output"
            for blob in seen:
                assert form.encode() not in blob, f"secret {secret[:6]}… in a response"


async def phone_burst(client: Client, urls: list[str], token: str, wx: Control,
                      n: int = 50) -> None:
    for i in range(n):
        wx.add_phone_code(f"burst-{i}", phone=f"1380000{i:04d}")
    calls = [client.call("POST", urls[i % len(urls)] + "/auth/wx/phone", {"code": f"burst-{i}"},
                         token) for i in range(n)]
    results = await asyncio.gather(*calls)
    assert [r[0] for r in results] == [200] * n, [r[1] for r in results if r[0] != 200][:3]
    phones = sorted(r[1]["data"]["purePhoneNumber"] for r in results)
    assert phones == sorted(f"1380000{i:04d}" for i in range(n))
