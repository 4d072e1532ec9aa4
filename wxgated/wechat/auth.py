"""Who is calling: the bearer token of a request, checked against keys and sessions.

Shared by the `jwt_auth` filter and the `wechat` terminals that need a logged-in user
(decrypt, phone, logout, refresh), so both refuse tokens the same way: a 401 envelope
whose msg names the reason, with `WWW-Authenticate: Bearer error="invalid_token"`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import unquote

from wxgated.http.message import HTTPError, Request
from wxgated.state.base import Ready, StateError
from wxgated.wechat.jwt_keys import KeyRing, TokenError
from wxgated.wechat.sessions import Session, SessionStore

WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer error="invalid_token"')


OTHER_APP = "token is for another mini program"


def unauthorized(msg: str, reason: str) -> HTTPError:
    """The 401 envelope; `reason` is the access log's word for it (TokenError.log_reason)."""
    return HTTPError(401, msg, headers=[WWW_AUTHENTICATE], reason=reason)


class TokenSource:
    """Where a token may come from: Authorization: Bearer, then a cookie, then a query
    parameter (WebSocket clients cannot set headers: `wss://...?token=`)."""

    __slots__ = ("cookie", "query")

    def __init__(self, cookie: str | None = None, query_param: str | None = None) -> None:
        self.cookie = cookie.encode() + b"=" if cookie else None
        self.query = query_param + "=" if query_param else None

    def extract(self, req: Request) -> str | None:
        auth = req.header(b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            token = auth[7:].strip()
            if token:
                return token.decode("latin-1")
        if self.cookie is not None:
            found = self._from_cookie(req.header(b"cookie"))
            if found:
                return found
        if self.query is not None and self.query in req.query:
            return self._from_query(req)
        return None

    def _from_cookie(self, header: bytes | None) -> str | None:
        if not header or self.cookie not in header:  # type: ignore[operator]
            return None
        for part in header.split(b";"):
            part = part.strip()
            if part.startswith(self.cookie):  # type: ignore[arg-type]
                return part[len(self.cookie):].strip(b'"').decode("latin-1")  # type: ignore[arg-type]
        return None

    def _from_query(self, req: Request) -> str | None:
        """Take the token out of the query so it reaches neither the upstream nor its logs."""
        prefix = self.query
        assert prefix is not None
        token = None
        keep = []
        for part in req.query.split("&"):
            if token is None and part.startswith(prefix):
                token = unquote(part[len(prefix):])
            else:
                keep.append(part)
        req.query = "&".join(keep)
        return token or None


Identity = tuple[dict[str, Any], str | None, str | None]  # (claims, unionid, phone)


class Authenticator:
    """Verifies a request's token; with `check_session`, a logged-out sid is refused at once."""

    __slots__ = ("ring", "sessions", "check_session", "source", "by_appid", "appids")

    def __init__(self, ring: KeyRing, sessions: SessionStore | None, check_session: bool = True,
                 source: TokenSource | None = None,
                 by_appid: dict[str, SessionStore] | None = None,
                 appids: frozenset[str] | None = None) -> None:
        """`by_appid` (several apps): the token's `appid` claim picks the session store;
        `appids`: only tokens of these apps pass (jwt_auth `apps`, a wechat route's app)."""
        if check_session and sessions is None:
            raise ValueError("check_session needs the session store (a wechat: section)")
        self.ring = ring
        self.sessions = sessions
        self.check_session = check_session
        self.source = source or TokenSource()
        self.by_appid = by_appid if by_appid and len(by_appid) > 1 else None
        self.appids = appids

    def authenticate(self, req: Request) -> Awaitable[Identity | None]:
        """(claims, unionid, phone), or None when the request carries no token at all;
        `Ready` when it is known at once (no session check, or sessions in memory).
        The phone is the session's (`store_phone`), so only with `check_session`.
        A bad token raises its 401 here, before anything is awaited."""
        claims = self._claims(req)
        if claims is None or not self.check_session:
            return Ready(_unchecked(claims))
        store = self._store(claims)
        if store is None:
            raise unauthorized(TokenError("revoked").msg, "session_revoked")
        found = store.lookup(_sid(claims))
        if isinstance(found, Ready):
            return Ready(_live(claims, found.value))
        return _checked(claims, found)

    def _store(self, claims: dict[str, Any]) -> SessionStore | None:
        """The session store of the token's app (one app: the only store)."""
        if self.by_appid is None:
            return self.sessions
        return self.by_appid.get(str(claims.get("appid") or ""))

    def _claims(self, req: Request) -> dict[str, Any] | None:
        token = self.source.extract(req)
        if token is None:
            return None
        try:
            claims = self.ring.verify(token)
        except TokenError as exc:
            raise unauthorized(exc.msg, exc.log_reason) from None
        if self.appids is not None and claims.get("appid") not in self.appids:
            raise unauthorized(OTHER_APP, "wrong_app")
        return claims

    async def require(self, req: Request) -> Identity:
        found = await self.authenticate(req)
        if found is None:
            raise unauthorized(TokenError("missing").msg, "token_missing")
        return found


async def _checked(claims: dict[str, Any], found: Awaitable[Session | None]) -> Identity:
    """The session check that had to wait (sessions in Redis)."""
    try:
        session = await found
    except StateError:
        raise HTTPError(503, "session store unavailable",
                        reason="session_store_unavailable") from None
    return _live(claims, session)


def _live(claims: dict[str, Any], session: Session | None) -> Identity:
    """The identity of a token whose session is still there; 401 when it was revoked."""
    if session is None or session.openid != claims["sub"]:
        raise unauthorized(TokenError("revoked").msg, "session_revoked")
    return claims, session.unionid or claims.get("unionid"), session.phone


def _unchecked(claims: dict[str, Any] | None) -> Identity | None:
    return None if claims is None else (claims, claims.get("unionid"), None)


def _sid(claims: dict[str, Any]) -> str:
    return str(claims.get("sid") or "")
