"""A local stand-in for api.weixin.qq.com that speaks its wire format (WeChat's server API documentation).

JSON is served as text/plain, errors as errcode/errmsg with a ", rid: ..." suffix, each
js_code and phone code works once (a second use: 40163 / 40029) and for 5 minutes
(`code_ttl`; then 40029). A phone code added with an openid answers 40029 when the body
names another openid (WeChat documents the openid check but not its errcode; 40029,
"invalid code", is the guess). Each login hands out its own session_key.

access_tokens as documented: cgi-bin/token and stable_token keep separate tokens; a new
cgi-bin/token, or stable_token with force_refresh, retires the previous token of its
kind after a 5-minute overlap (`token_overlap`); every token-protected API answers
42001 for a token past its expires_in, 40001 for one retired, revoked or never issued,
41001 for none. Tests steer it through the `Control` object:

    app, wx = make_wechat_app("wxappid", "secret")
    app, ctls = make_wechat_apps({"wxprod": "s1", "wxstaging": "s2"})  # one WeChat, several apps
    base = await serve(app)
    wx.add_code("c1", "openid-1")
    wx.fail_next(2); wx.latency = 0.2; wx.quota_per_minute = 3; wx.expire_tokens()
    wx.delays["jscode2session"] = 2.0   # accepts the request, answers late
    wx.misconfigure(40164)               # every API answers 40164 (IP not whitelisted)
    wx.reject_token(t)                   # 40001 for t, yet stable_token hands t out
    wx.reject_token(t, 40014)            # ... or another errcode
    wx.age_tokens(7201)                  # every token issued so far is past expires_in: 42001
    wx.token_overlap = 0.2               # a superseded token dies 0.2 s after its successor
    assert wx.calls["stable_token"] == 1
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TEXT = "text/plain"


@dataclass
class Control:
    appid: str
    secret: str
    latency: float = 0.0
    quota_per_minute: int | None = None  # jscode2session calls per minute before 45011
    token_ttl: int = 7200
    code_ttl: float = 300.0  # js_code and phone code lifetime
    delays: dict[str, float] = field(default_factory=dict)  # api -> seconds before answering
    config_errcode: int | None = None  # every API answers this (40125, 40164, ...)
    token_overlap: float = 300.0  # a superseded token keeps working this long
    rejected: dict[str, int] = field(default_factory=dict)  # token -> errcode it gets
    issued: dict[str, float] = field(default_factory=dict)  # code -> time.time() issued
    last_body: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    used_codes: set[str] = field(default_factory=set)
    phone_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked_codes: set[str] = field(default_factory=set)  # answer 40226 (high-risk user)
    session_keys: dict[str, str] = field(default_factory=dict)  # openid -> session_key
    tokens: dict[str, float] = field(default_factory=dict)  # access_token -> expires at
    retired: dict[str, float] = field(default_factory=dict)  # access_token -> dies at
    stable: str | None = None  # stable_token's current token
    plain: str | None = None  # cgi-bin/token's current token
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    last_query: dict[str, dict[str, str]] = field(default_factory=dict)
    _fail: int = 0
    _minute: list[float] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _country_flip: bool = False

    def add_code(self, code: str, openid: str, session_key: str | None = None,
                 unionid: str | None = None) -> str:
        """Register a wx.login code; returns the session_key WeChat will hand out."""
        key = session_key or base64.b64encode(os.urandom(16)).decode()
        entry = {"openid": openid, "session_key": key}
        if unionid:
            entry["unionid"] = unionid
        self.codes[code] = entry
        self.issued[code] = time.time()
        return key

    def add_phone_code(self, code: str, phone: str = "13800138000", country: str = "86",
                       openid: str | None = None) -> None:
        """A phone code; with `openid` it only works for that user (when the body says)."""
        self.phone_codes[code] = {"purePhoneNumber": phone, "countryCode": country,
                                  "openid": openid}
        self.issued[code] = time.time()

    def age_codes(self, seconds: float) -> None:
        """Every code issued so far is `seconds` older (to test the 5-minute expiry)."""
        for code in self.issued:
            self.issued[code] -= seconds

    def code_expired(self, code: str) -> bool:
        return time.time() - self.issued.get(code, time.time()) > self.code_ttl

    def misconfigure(self, errcode: int | None) -> None:
        """Every API answers `errcode` (40125 bad secret, 40164 IP not whitelisted, ...)."""
        self.config_errcode = errcode

    def reject_token(self, token: str, errcode: int = 40001) -> None:
        """WeChat says `errcode` to `token`, but stable_token keeps returning it until forced."""
        self.rejected[token] = errcode

    def fail_next(self, n: int) -> None:
        """The next `n` calls (any endpoint) answer errcode -1, system busy."""
        self._fail = n

    def expire_tokens(self) -> None:
        """Every access_token issued so far stops working (40001: WeChat forgot them)."""
        self.tokens.clear()
        self.stable = self.plain = None

    def age_tokens(self, seconds: float) -> None:
        """Every access_token issued so far is `seconds` older: past its expires_in it
        answers 42001, and the token endpoints hand out new ones."""
        for token in self.tokens:
            self.tokens[token] -= seconds

    def new_token(self) -> str:
        token = f"ACCESS_TOKEN_{next(self._seq)}_{os.urandom(6).hex()}"
        self.tokens[token] = time.time() + self.token_ttl
        return token

    def retire(self, token: str | None) -> None:
        """`token` was superseded: it works `token_overlap` seconds more, then 40001."""
        if token is not None:
            dies = time.time() + self.token_overlap
            self.retired[token] = min(self.retired.get(token, dies), dies)

    def token_errcode(self, token: str | None) -> int:
        """0 when `token` works, else what WeChat answers to it."""
        if not token:
            return 41001
        if token not in self.tokens:
            return 40001
        if token in self.rejected:
            return self.rejected[token]
        now = time.time()
        if self.retired.get(token, now + 1) <= now:
            return 40001
        return 42001 if self.tokens[token] <= now else 0

    def token_ok(self, token: str | None) -> bool:
        return self.token_errcode(token) == 0


def _rid() -> str:
    return f", rid: {os.urandom(4).hex()}-{os.urandom(2).hex()}"


def _answer(doc: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type=TEXT)


def _error(code: int, msg: str) -> web.Response:
    return _answer({"errcode": code, "errmsg": msg + _rid()})


_TOKEN_MESSAGES = {
    40001: "invalid credential, access_token is invalid or not latest",
    40014: "invalid access_token", 41001: "access_token missing",
    42001: "access_token expired",
}
_CONFIG_MESSAGES = {
    40013: "invalid appid", 40125: "invalid appsecret", 41002: "appid missing",
    40164: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
}


def make_wechat_app(appid: str, secret: str) -> tuple[web.Application, Control]:
    app, ctls = make_wechat_apps({appid: secret})
    return app, ctls[appid]


def make_wechat_apps(credentials: dict[str, str]
                     ) -> tuple[web.Application, dict[str, Control]]:
    """One WeChat serving several mini programs (appid -> AppSecret), as the real one
    does: each appid has its own codes, users, tokens and counters, a wrong secret for
    an appid is refused, and an access_token works only for the appid it was issued to."""
    ctls = {appid: Control(appid, secret) for appid, secret in credentials.items()}
    first = next(iter(ctls.values()))

    def by_appid(appid: str | None) -> Control:
        return ctls.get(appid or "", first)  # an unknown appid is refused below (40013)

    def by_token(token: str | None) -> Control:
        return next((c for c in ctls.values() if token in c.tokens), first)

    async def gate(ctl: Control, api: str, request: web.Request) -> web.Response | None:
        ctl.calls[api] += 1
        ctl.last_query[api] = dict(request.query)
        if ctl.latency or ctl.delays.get(api):
            await asyncio.sleep(ctl.latency + ctl.delays.get(api, 0.0))
        if ctl._fail > 0:
            ctl._fail -= 1
            return _error(-1, "system error")
        if ctl.config_errcode is not None:
            code = ctl.config_errcode
            return _error(code, _CONFIG_MESSAGES.get(code, "configuration error"))
        return None

    async def token_gate(api: str, request: web.Request) -> tuple[Control, web.Response | None]:
        """`gate`, then the access_token check every token-protected API makes."""
        token = request.query.get("access_token")
        ctl = by_token(token)
        if (busy := await gate(ctl, api, request)) is not None:
            return ctl, busy
        code = ctl.token_errcode(token)
        if code:
            return ctl, _error(code, _TOKEN_MESSAGES.get(code, "invalid access_token"))
        return ctl, None

    async def jscode2session(request: web.Request) -> web.Response:
        q = request.query
        ctl = by_appid(q.get("appid"))
        if (busy := await gate(ctl, "jscode2session", request)) is not None:
            return busy
        if q.get("appid") != ctl.appid:
            return _error(40013, "invalid appid")
        if q.get("secret") != ctl.secret:
            return _error(40125, "invalid appsecret")
        if ctl.quota_per_minute is not None:
            now = time.monotonic()
            ctl._minute = [t for t in ctl._minute if now - t < 60.0]
            if len(ctl._minute) >= ctl.quota_per_minute:
                return _error(45011, "api minute-quota reach limit  mustslower  retry next minute")
            ctl._minute.append(now)
        code = q.get("js_code", "")
        if code in ctl.blocked_codes:
            return _error(40226, "high risk user")
        if code in ctl.used_codes:
            return _error(40163, "code been used")
        entry = ctl.codes.get(code)
        if entry is None or ctl.code_expired(code):
            return _error(40029, "invalid code")
        ctl.used_codes.add(code)
        ctl.session_keys[entry["openid"]] = entry["session_key"]
        return _answer(dict(entry))  # success: no errcode at all, like the real thing

    async def token(request: web.Request) -> web.Response:
        q = request.query
        ctl = by_appid(q.get("appid"))
        if (busy := await gate(ctl, "token", request)) is not None:
            return busy
        if q.get("appid") != ctl.appid:
            return _error(40013, "invalid appid")
        if q.get("secret") != ctl.secret:  # WeChat's answer to a wrong secret here
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        previous, ctl.plain = ctl.plain, ctl.new_token()
        ctl.retire(previous)  # stable_token's token is not affected
        return _answer({"access_token": ctl.plain, "expires_in": ctl.token_ttl})

    async def stable_token(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        ctl = by_appid(body.get("appid") if isinstance(body, dict) else None)
        if (busy := await gate(ctl, "stable_token", request)) is not None:
            return busy
        if not isinstance(body, dict):
            return _error(47001, "data format error")
        if body.get("appid") != ctl.appid:
            return _error(40013, "invalid appid")
        if body.get("secret") != ctl.secret:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if body.get("force_refresh"):
            ctl.calls["stable_token_force"] += 1
        alive = ctl.stable is not None and ctl.tokens.get(ctl.stable, 0) > time.time()
        if body.get("force_refresh") or not alive:
            previous, ctl.stable = ctl.stable, ctl.new_token()
            if body.get("force_refresh"):
                ctl.retire(previous)
        left = int(ctl.tokens[ctl.stable] - time.time())
        return _answer({"access_token": ctl.stable, "expires_in": left})

    async def checksession(request: web.Request) -> web.Response:
        q = request.query
        ctl, refused = await token_gate("checksession", request)
        if refused is not None:
            return refused
        key = ctl.session_keys.get(q.get("openid", ""))
        if key is None:
            return _error(40003, "invalid openid")
        expected = hmac.new(key.encode(), b"", hashlib.sha256).hexdigest()
        if q.get("sig_method") != "hmac_sha256" or q.get("signature") != expected:
            return _error(87009, "invalid signature")
        return _answer({"errcode": 0, "errmsg": "ok"})

    async def phone(request: web.Request) -> web.Response:
        ctl, refused = await token_gate("getuserphonenumber", request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
            code, openid = body.get("code"), body.get("openid")
        except (ValueError, AttributeError):
            return _error(47001, "data format error")
        ctl.last_body["getuserphonenumber"] = body
        entry = ctl.phone_codes.get(code)
        if entry is None or ctl.code_expired(code):
            return _error(40029, "invalid code")
        if openid is not None and entry["openid"] not in (None, openid):
            return _error(40029, "invalid code")  # not this user's code (errcode: a guess)
        del ctl.phone_codes[code]
        # Real answers carry countryCode as a string in some replies, a number in others.
        ctl._country_flip = not ctl._country_flip
        country = entry["countryCode"] if ctl._country_flip else int(entry["countryCode"])
        info = {
            "phoneNumber": f"+{entry['countryCode']} {entry['purePhoneNumber']}",
            "purePhoneNumber": entry["purePhoneNumber"], "countryCode": country,
            "watermark": {"timestamp": int(time.time()), "appid": ctl.appid},
        }
        return _answer({"errcode": 0, "errmsg": "ok", "phone_info": info})

    def echo_api(api: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            """Any token-protected API, for the `wechat: api` terminal: echoes what it got."""
            ctl, refused = await token_gate(api, request)
            if refused is not None:
                return refused
            body = (await request.read()).decode()
            return _answer({"errcode": 0, "errmsg": "ok", "result": {"suggest": "pass"},
                            "echo": body, "query": {k: v for k, v in request.query.items()
                                                    if k != "access_token"},
                            "query_items": [[k, v] for k, v in request.query.items()
                                            if k != "access_token"]})
        return handler

    app = web.Application()
    app.router.add_get("/sns/jscode2session", jscode2session)
    app.router.add_get("/cgi-bin/token", token)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/wxa/checksession", checksession)
    app.router.add_post("/wxa/business/getuserphonenumber", phone)
    app.router.add_post("/wxa/msg_sec_check", echo_api("msg_sec_check"))
    app.router.add_post("/cgi-bin/message/subscribe/send", echo_api("send"))
    return app, ctls
