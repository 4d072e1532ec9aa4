"""The actions behind the `wechat` terminal (registered in wxgated/terminals/wechat.py).

Each builder runs once per route at compile time and returns the request handler.
Nothing here ever puts a session_key, the AppSecret or an access_token into a response
(the `api` action passes WeChat's answer through; WeChat answers do not carry tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.gateway.envelope import envelope
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.state.base import StateBackend, StateError
from wxgated.wechat.api_proxy import build_api_handler, compile_templates
from wxgated.wechat.apps import App, apps_of
from wxgated.wechat.auth import OTHER_APP, Authenticator, unauthorized
from wxgated.wechat.client import WeChatClient, WeChatError
from wxgated.wechat.crypto import (
    DecryptError,
    decrypt_user_data,
    raw_data_signature_ok,
)
from wxgated.wechat.jwt_keys import KeyRing, TokenError
from wxgated.wechat.login_hook import compile_hook
from wxgated.wechat.push import PushKeys, build_push_handler
from wxgated.wechat.replay import ReplayGuard
from wxgated.wechat.sessions import SessionStore
from wxgated.wechat.settings import WeChatSettings
from wxgated.wechat.token_keeper import TokenKeeper
from wxgated.wechat.verified_forward import compile_forward, e164

ACTIONS = ("login", "decrypt", "phone", "logout", "refresh", "push", "api", "jwks")
JSON_LIMIT = 64 * 1024
_NEEDS = {
    "login": ("wechat", "jwt", "sessions"), "decrypt": ("jwt", "sessions"),
    "phone": ("wechat", "jwt", "sessions", "tokens"), "logout": ("jwt", "sessions"),
    "refresh": ("jwt", "sessions"), "push": ("wechat_settings",), "api": ("wechat", "tokens"),
    "jwks": ("jwt",),
}
_MESSAGES = {
    -1: "WeChat is unavailable, try again", 40029: "invalid code", 40163: "code already used",
    45011: "too many requests to WeChat, slow down", 40226: "user blocked by WeChat",
    40001: "WeChat rejected the access_token", 42001: "WeChat rejected the access_token",
}


@dataclass(frozen=True)
class Deps:
    settings: WeChatSettings | None
    client: WeChatClient | None
    ring: KeyRing | None
    sessions: SessionStore | None
    tokens: TokenKeeper | None
    state: StateBackend | None = None  # the shared state: push's seen-nonce cache
    several: bool = False  # several apps configured: tokens must carry this app's appid

    @classmethod
    def from_services(cls, services: dict[str, Any], action: str,
                      app: App | None = None) -> Deps:
        """The route's app's objects (`app`), else the only app's."""
        for name in _NEEDS[action]:
            if services.get(name) is None:
                section = "jwt" if name == "jwt" else "wechat"
                raise SemanticError(f"wechat: {action} needs a top-level {section}: section")
        if app is not None:
            apps = apps_of(services)
            return cls(app.settings, app.client, services.get("jwt"), app.sessions,
                       app.tokens, services.get("state"),
                       apps is not None and len(apps.by_name) > 1)
        return cls(services.get("wechat_settings"), services.get("wechat"),
                   services.get("jwt"), services.get("sessions"), services.get("tokens"),
                   services.get("state"))

    @property
    def appid(self) -> str:
        return self.settings.appid if self.settings is not None else ""

    def auth(self, check_session: bool = True) -> Authenticator:
        """With several apps, only this app's tokens: a session of one app is no session
        of another (with one, its sessions are keyed by its appid anyway)."""
        assert self.ring is not None
        return Authenticator(self.ring, self.sessions, check_session,
                             appids=frozenset({self.appid}) if self.several else None)


_LOGIN_UNANSWERED = "WeChat is unavailable: call wx.login again for a new code"


def wechat_error(err: WeChatError, code_status: int = 401,
                 unanswered: str | None = None) -> HTTPError:
    """The documented errcode → HTTP status map (docs/CONFIG.md); `code` carries WeChat's errcode.

    `unanswered` replaces the message when the request reached WeChat and failed there
    (login: the js_code may be spent, so "try again" with it would only get 40163).
    """
    code, headers = err.errcode, []
    if err.unreachable or code == -1:
        status, headers = 503, [(b"retry-after", b"1")]
    elif code in (40029, 40163):
        status = code_status
    elif code == 45011:
        status, headers = 429, [(b"retry-after", b"60")]
    elif code == 40226:
        status = 403
    else:
        status = 502
    msg = _MESSAGES.get(code, f"WeChat API error {code}")
    if unanswered is not None and code == -1 and err.sent:
        msg = unanswered
    return HTTPError(status, msg, code=code, headers=headers)


async def json_body(req: Request, *fields: str) -> dict[str, Any]:
    """The request's JSON object with these string fields present (else a 400)."""
    raw = await req.body.read(JSON_LIMIT)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise HTTPError(400, "body must be a JSON object")
    for name in fields:
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise HTTPError(400, f"{name} is required")
    return doc


async def _state(awaitable: Any) -> Any:
    try:
        return await awaitable
    except StateError:
        raise HTTPError(503, "session store unavailable") from None


def _token_data(ring: KeyRing, appid: str, openid: str, sid: str, unionid: str | None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The login/refresh answer; `extra` (login hook claims) cannot replace the identity
    claims (reserved names are a config error; they are written last all the same).
    `appid` says which mini program the session belongs to (jwt_auth `apps`)."""
    claims: dict[str, Any] = {**(extra or {}), "sub": openid, "sid": sid, "appid": appid}
    if unionid:
        claims["unionid"] = unionid
    token, expires_in = ring.issue(claims)
    data: dict[str, Any] = {"token": token, "token_type": "Bearer", "expires_in": expires_in,
                            "openid": openid}
    if unionid:
        data["unionid"] = unionid
    return data


def build_login(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    client, sessions, ring = deps.client, deps.sessions, deps.ring
    assert client is not None and sessions is not None and ring is not None
    hook = compile_hook(opts["hook"], ctx, client.appid) if opts.get("hook") else None

    async def login(req: Request) -> Response:
        code = (await json_body(req, "code"))["code"]
        try:
            doc = await client.code2session(code)
        except WeChatError as err:
            raise wechat_error(err, unanswered=_LOGIN_UNANSWERED) from None
        unionid = doc.get("unionid") or None
        # the hook answers before a session exists: a failed hook leaves nothing usable
        extra = await hook.claims_for(req, doc["openid"], unionid) if hook else None
        sess = await _state(sessions.create(doc["openid"], unionid, doc["session_key"], extra))
        data = _token_data(ring, client.appid, sess.openid, sess.sid, unionid, extra)
        return envelope(200, data, trace_id=req.trace_id)

    return login


async def _claims(auth: Authenticator, req: Request) -> dict[str, Any]:
    """The caller's claims: from a jwt_auth filter on the route, else from the token;
    a token of another app is refused either way."""
    if req.claims is not None:
        if auth.appids is not None and req.claims.get("appid") not in auth.appids:
            raise unauthorized(OTHER_APP, "wrong_app")
        return req.claims
    return (await auth.require(req))[0]


def build_decrypt(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    auth, sessions, settings = deps.auth(), deps.sessions, deps.settings
    assert sessions is not None
    appid = settings.appid if settings is not None else ""
    forward = compile_forward(opts, ctx)

    async def decrypt(req: Request) -> Response:
        claims = await _claims(auth, req)
        body = await json_body(req, "encryptedData", "iv")
        rec = await _state(sessions.get(str(claims.get("sid") or "")))
        if rec is None or rec.openid != claims.get("sub"):
            raise unauthorized(TokenError("revoked").msg, "session_revoked")
        raw, sig = body.get("rawData"), body.get("signature")
        if raw is not None or sig is not None:
            if not isinstance(raw, str) or not isinstance(sig, str) or \
                    not raw_data_signature_ok(raw, sig, rec.session_key):
                raise HTTPError(400, "rawData signature mismatch")
        try:
            doc = decrypt_user_data(rec.session_key, body["encryptedData"], body["iv"], appid)
        except DecryptError as exc:
            if exc.stale:  # WeChat has issued a newer session_key: only a new login helps
                raise unauthorized(exc.reason, "session_key_stale") from None
            raise HTTPError(400, exc.reason) from None
        if doc.get("openId", rec.openid) != rec.openid:
            raise HTTPError(400, "decrypted data belongs to another user")
        if forward is not None:
            return await forward.send(req, doc, rec.openid,
                                      rec.unionid or claims.get("unionid"), rec.phone)
        return envelope(200, doc, trace_id=req.trace_id)

    return decrypt


def build_phone(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    auth, client, tokens, sessions = deps.auth(), deps.client, deps.tokens, deps.sessions
    assert client is not None and tokens is not None and sessions is not None
    forward, store = compile_forward(opts, ctx), bool(opts.get("store_phone"))

    async def phone(req: Request) -> Response:
        claims = await _claims(auth, req)
        openid = str(claims.get("sub") or "")
        code = (await json_body(req, "code"))["code"]
        sid, sess = str(claims.get("sid") or ""), None
        if forward is not None or store:  # the session's unionid and phone, before WeChat
            sess = await _state(sessions.lookup(sid))
            if sess is None or sess.openid != openid:
                raise unauthorized(TokenError("revoked").msg, "session_revoked")
        try:
            info = await tokens.call_with_token(
                lambda t: client.get_phone_number(t, code, openid))
        except WeChatError as err:
            raise wechat_error(err, code_status=400) from None  # a bad phone code is no 401
        if sess is None:
            return envelope(200, info, trace_id=req.trace_id)
        number = e164(info) if store else None
        if forward is None:
            resp = envelope(200, info, trace_id=req.trace_id)
        else:
            resp = await forward.send(req, info, openid,
                                      sess.unionid or claims.get("unionid"), sess.phone)
        # kept only once the backend (if any) took it: a refused number is not the user's
        if number is not None and 200 <= resp.status < 300 and \
                not await _state(sessions.set_phone(sid, number)):
            raise unauthorized(TokenError("revoked").msg, "session_revoked")
        return resp

    return phone


def build_logout(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    auth, sessions = deps.auth(check_session=False), deps.sessions
    assert sessions is not None

    async def logout(req: Request) -> Response:
        claims = await _claims(auth, req)
        await _state(sessions.revoke(str(claims.get("sid") or "")))
        return envelope(200, None, trace_id=req.trace_id)

    return logout


def build_refresh(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    auth, sessions, ring = deps.auth(), deps.sessions, deps.ring
    assert sessions is not None and ring is not None

    async def refresh(req: Request) -> Response:
        claims, unionid, _ = await auth.require(req)
        sid = str(claims.get("sid") or "")
        sess = await _state(sessions.renew(sid))
        if sess is None:
            raise unauthorized(TokenError("revoked").msg, "session_revoked")
        # hook claims come from the session, not from the token being replaced
        data = _token_data(ring, deps.appid, str(claims["sub"]), sid, unionid, sess.claims)
        return envelope(200, data, trace_id=req.trace_id)

    return refresh


def build_jwks(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    assert deps.ring is not None
    body = json.dumps(deps.ring.jwks(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"public, max-age=300")]

    async def jwks(req: Request) -> Response:
        return Response(200, list(headers), body)

    return jwks


def build_push(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    settings = deps.settings
    assert settings is not None
    if not settings.push_token:
        raise SemanticError("wechat: push needs wechat.push_token (the message-push Token)")
    keys = PushKeys(settings.push_token, settings.appid, settings.push_aes_key)
    guard = ReplayGuard(deps.state, settings.appid, settings.push_max_age)
    return build_push_handler(keys, guard, opts.get("forward"))  # `upstream` terminal, if named


def build_api(deps: Deps, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    client, tokens, settings = deps.client, deps.tokens, deps.settings
    assert client is not None and tokens is not None
    tpl = compile_templates(opts, settings.appid if settings is not None else "")
    handler = build_api_handler(client, tokens, opts["path"], tpl,
                                lambda err: wechat_error(err, code_status=400))
    if not deps.several:
        return handler
    appid = deps.appid

    async def own_app_only(req: Request) -> Response:
        """This app's access_token acts for this app's users only."""
        if req.claims is not None and req.claims.get("appid") != appid:
            raise unauthorized(OTHER_APP, "wrong_app")
        return await handler(req)

    return own_app_only


BUILDERS: dict[str, Callable[[Deps, dict[str, Any], dict[str, Any], Any], Handler]] = {
    "login": build_login, "decrypt": build_decrypt, "phone": build_phone,
    "logout": build_logout, "refresh": build_refresh, "push": build_push, "api": build_api,
    "jwks": build_jwks,
}
