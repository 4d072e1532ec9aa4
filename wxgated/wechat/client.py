"""The WeChat server API client (WeChat's server API documentation): the only code that talks to api.weixin.qq.com.

WeChat serves JSON as text/plain and signals errors in the body (`errcode`), so every
answer is parsed as JSON whatever its Content-Type and HTTP status. Only errcode -1
("system busy") and a missing answer are retried: everything else is a definite no.
code2session is the exception: a js_code works once, so once the request may have
reached WeChat (a timeout, a -1) a retry could turn WeChat's success into 40163 "code
been used". It is retried only when the connection itself failed, before sending.

The AppSecret travels in query strings (WeChat's choice), so URLs are never logged and
no exception raised here carries a URL, a request object or a chained cause.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from wxgated.observe import tracing
from wxgated.observe.metrics import WECHAT_API_REQUESTS
from wxgated.wechat.config_errors import report as report_config_error

JsonDict = dict[str, Any]


class WeChatError(Exception):
    """WeChat said no (`errcode` != 0), or could not be reached (`unreachable`, errcode -1).

    Branch on `errcode` only: `errmsg` carries a per-request "rid" suffix. `sent` is
    False only when the request certainly never left (the connection failed), which is
    what decides whether a one-time js_code may be tried again.
    """

    def __init__(self, errcode: int, errmsg: str, api: str, *, unreachable: bool = False,
                 sent: bool = True) -> None:
        super().__init__(f"{api}: errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        self.unreachable = unreachable
        self.sent = sent


# Failures raised before a byte of the request was written: refused, DNS, TLS, connect
# timeout. Anything later (read timeout, disconnect) may have reached WeChat.
# (ConnectionTimeoutError exists from aiohttp 3.10; pyproject allows 3.9.)
_NOT_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,) + tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if isinstance(t, type))


class WeChatClient:
    """One per appid and process. `retries` counts extra attempts after the first."""

    def __init__(
        self,
        api_base: str,
        appid: str,
        secret: str,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.1,
        app: str = "default",  # the `app` metrics label: a configured app name (bounded)
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.appid = appid
        self._secret = secret
        self.timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._counters: dict[tuple[str, int], Any] = {}
        self.app = app

    def __repr__(self) -> str:
        return f"WeChatClient(api_base={self.api_base!r}, appid={self.appid!r}, secret=<hidden>)"

    @property
    def max_call_seconds(self) -> float:
        """The longest one `call()` can take, retries and backoff included."""
        n = self._retries + 1
        return n * self.timeout + self._backoff * (2 ** self._retries - 1)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily: it must be born inside the running loop (and after a fork).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _count(self, api: str, errcode: int) -> None:
        child = self._counters.get((api, errcode))
        if child is None:
            child = self._counters[(api, errcode)] = WECHAT_API_REQUESTS.labels(
                api, str(errcode), self.app)
        child.inc()
        if errcode > 0:
            report_config_error(api, errcode, app=self.app)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "<secret>") if self._secret else text

    async def _once(self, api: str, method: str, path: str, params: dict[str, str],
                    body: JsonDict | None) -> JsonDict:
        tracer = tracing.tracer
        if tracer is None:
            return await self._exchange(api, method, path, params, body)
        start = time.monotonic()
        try:
            doc = await self._exchange(api, method, path, params, body)
        except WeChatError as err:
            tracer.wechat(api, start, err.errcode, None)
            raise
        tracer.wechat(api, start, _errcode(doc), None)
        return doc

    async def _exchange(self, api: str, method: str, path: str, params: dict[str, str],
                        body: JsonDict | None) -> JsonDict:
        """One HTTP exchange (the span of a call covers exactly this)."""
        try:
            async with self._http().request(
                method, self.api_base + path, params=params, json=body
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = self._scrub(str(exc)) or type(exc).__name__
            raise WeChatError(-1, f"unreachable: {detail}", api, unreachable=True,
                              sent=not isinstance(exc, _NOT_SENT)) from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            # An HTML error page from WeChat's edge: as good as no answer.
            raise WeChatError(-1, f"no JSON answer (HTTP {status})", api, unreachable=True)
        return doc

    async def call(self, api: str, method: str, path: str, params: dict[str, str],
                   body: JsonDict | None = None, *, once_only: bool = False) -> JsonDict:
        """One API call with retries of -1; raises WeChatError unless errcode is 0/absent.

        `once_only`: the call consumes something single-use (a js_code), so it is retried
        only when the request never left this process.
        """
        attempt = 0
        while True:
            try:
                doc = await self._once(api, method, path, params, body)
                code = _errcode(doc)
                if code != 0:
                    raise WeChatError(code, self._scrub(str(doc.get("errmsg", ""))), api)
                self._count(api, 0)
                return doc
            except WeChatError as err:
                self._count(api, err.errcode)
                if err.errcode != -1 or attempt >= self._retries or (once_only and err.sent):
                    raise
            await asyncio.sleep(self._backoff * (2 ** attempt))
            attempt += 1

    async def code2session(self, js_code: str) -> JsonDict:
        """{openid, session_key, unionid?} for a wx.login code (single use, ~5 minutes)."""
        doc = await self.call("jscode2session", "GET", "/sns/jscode2session", {
            "appid": self.appid, "secret": self._secret, "js_code": js_code,
            "grant_type": "authorization_code",
        }, once_only=True)
        if not doc.get("openid") or not doc.get("session_key"):
            raise WeChatError(-1, "answer without openid/session_key", "jscode2session")
        return doc

    async def get_token(self) -> JsonDict:
        """{access_token, expires_in} from cgi-bin/token (invalidates the previous token)."""
        doc = await self.call("token", "GET", "/cgi-bin/token", {
            "grant_type": "client_credential", "appid": self.appid, "secret": self._secret,
        })
        return _token_doc(doc, "token")

    async def get_stable_token(self, force_refresh: bool = False) -> JsonDict:
        """{access_token, expires_in} from cgi-bin/stable_token (same token while valid)."""
        doc = await self.call("stable_token", "POST", "/cgi-bin/stable_token", {}, {
            "grant_type": "client_credential", "appid": self.appid, "secret": self._secret,
            "force_refresh": force_refresh,
        })
        return _token_doc(doc, "stable_token")

    async def check_session(self, access_token: str, openid: str, session_key: str) -> JsonDict:
        from wxgated.wechat.crypto import check_session_signature

        return await self.call("checksession", "GET", "/wxa/checksession", {
            "access_token": access_token, "openid": openid,
            "signature": check_session_signature(session_key), "sig_method": "hmac_sha256",
        })

    async def get_phone_number(self, access_token: str, code: str,
                               openid: str | None = None) -> JsonDict:
        """phone_info with `countryCode` always a string (WeChat sends str or int).

        With `openid` WeChat checks the phone code was issued to that user, so a caller
        cannot redeem a code intercepted from someone else.
        """
        body = {"code": code, "openid": openid} if openid else {"code": code}
        doc = await self.call("getuserphonenumber", "POST", "/wxa/business/getuserphonenumber",
                              {"access_token": access_token}, body)
        info = doc.get("phone_info")
        if not isinstance(info, dict):
            raise WeChatError(-1, "answer without phone_info", "getuserphonenumber")
        if "countryCode" in info:
            info["countryCode"] = str(info["countryCode"])
        return info

    async def raw(self, api: str, method: str, path: str, query: list[tuple[str, str]],
                  body: bytes, content_type: str | None) -> tuple[int, str, bytes, int]:
        """Forward one request to any WeChat API path (the `wechat: api` terminal).

        No retries: the body may not be idempotent. Returns (status, content type, body,
        errcode), errcode 0 when the answer is not a JSON error (e.g. an image).
        """
        headers = {"content-type": content_type} if content_type else {}
        tracer = tracing.tracer
        start = time.monotonic()
        try:
            async with self._http().request(method, self.api_base + path, params=query,
                                            data=body or None, headers=headers) as resp:
                status, ctype, data = resp.status, resp.headers.get("content-type", ""), \
                    await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._count(api, -1)
            if tracer is not None:
                tracer.wechat(api, start, -1, None)
            detail = self._scrub(str(exc)) or type(exc).__name__
            raise WeChatError(-1, f"unreachable: {detail}", api, unreachable=True,
                              sent=not isinstance(exc, _NOT_SENT)) from None
        code = 0
        if data[:1] == b"{":
            try:
                doc = json.loads(data)
                code = _errcode(doc) if isinstance(doc, dict) else 0
            except ValueError:
                pass
        self._count(api, code)
        if tracer is not None:
            tracer.wechat(api, start, code, status)
        return status, ctype, data, code


def _errcode(doc: JsonDict) -> int:
    code = doc.get("errcode", 0)
    try:
        return int(code or 0)
    except (TypeError, ValueError):
        return -1


def _token_doc(doc: JsonDict, api: str) -> JsonDict:
    token = doc.get("access_token")
    try:
        expires_in = int(doc.get("expires_in", 7200))
    except (TypeError, ValueError):
        expires_in = 7200
    if not isinstance(token, str) or not token:
        raise WeChatError(-1, "answer without access_token", api)
    return {"access_token": token, "expires_in": expires_in}
