"""A WeChat sandbox for `wxgated demo`: jscode2session and stable_token on 127.0.0.1.

Why it exists: the demo must show the whole login (code → session → JWT) without an
AppID, a secret or the internet. It answers in WeChat's wire format (JSON served as
text/plain, errors as errcode/errmsg, a success without errcode) so the gateway runs
its real client code against it. Unlike real wx.login codes, the documented test codes
(`DEMO_CODES`) work any number of times, so the printed curl commands can be re-run.
`wxgated run` never starts it: only the demo config's `wechat.api_base` points here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

from aiohttp import web

# the test codes a demo user may send to POST /auth/wx/login, and whom they log in as
DEMO_CODES: dict[str, str] = {
    "demo-code-alice": "o-demo-alice",
    "demo-code-bob": "o-demo-bob",
}

TOKEN_TTL = 7200


def _answer(doc: dict[str, object]) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type="text/plain")


def _error(code: int, msg: str) -> web.Response:
    return _answer({"errcode": code, "errmsg": f"{msg}, rid: demo-{os.urandom(3).hex()}"})


def session_key(openid: str) -> str:
    """A stable per-user session_key (16 bytes, base64), as WeChat would hand out."""
    return base64.b64encode(hashlib.sha256(openid.encode()).digest()[:16]).decode()


def make_sandbox(appid: str, secret: str) -> web.Application:
    """The sandbox app for one appid/secret pair (the ones in the demo config)."""
    state: dict[str, float | str] = {}

    async def jscode2session(request: web.Request) -> web.Response:
        q = request.query
        if q.get("appid") != appid:
            return _error(40013, "invalid appid")
        if q.get("secret") != secret:
            return _error(40125, "invalid appsecret")
        openid = DEMO_CODES.get(q.get("js_code", ""))
        if openid is None:
            return _error(40029, "invalid code")
        return _answer({"openid": openid, "session_key": session_key(openid)})

    async def stable_token(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(47001, "data format error")
        if not isinstance(body, dict) or body.get("appid") != appid:
            return _error(40013, "invalid appid")
        if body.get("secret") != secret:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        expires = float(state.get("expires", 0.0))
        if body.get("force_refresh") or expires <= time.time():
            state["token"] = f"DEMO_ACCESS_TOKEN_{os.urandom(8).hex()}"
            state["expires"] = expires = time.time() + TOKEN_TTL
        return _answer({"access_token": state["token"], "expires_in": int(expires - time.time())})

    app = web.Application()
    app.router.add_get("/sns/jscode2session", jscode2session)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    return app
