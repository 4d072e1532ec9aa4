"""`jwt_auth`: only logged-in mini-program users pass; upstreams learn who they are.

The upstream gets `X-WX-OpenID` (and `X-WX-UnionID` when known, `X-WX-Phone` when the
session holds a number `wechat: phone` stored) plus any claim→header mappings; whatever the client sent under those names is dropped first, so identity
headers only ever come from a verified token. A claim that cannot be a header value
(control bytes, edge spaces, not a string, or for mapped claims not a string, number or
boolean, or a list of such strings, sent comma-joined) refuses the request with a 401
rather than being dropped. The verified token
is cached by the key ring, so the per-request cost is a dict hit, an int compare and (with `check_session`,
the default) one state-backend read that makes logout effective at once.

    filters:
      - jwt_auth:
          optional: false          # true: no token → anonymous (a bad token is still 401)
          check_session: true      # false: skip the revocation check (pure stateless)
          cookie: wx_token         # also read the token from this cookie
          query_param: token       # also from ?token= (WebSocket), removed before proxying
          claim_headers: {role: X-User-Role}
          apps: [prod]             # only tokens of these wechat.apps (others: 401)
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Request
from wxgated.state.base import Ready
from wxgated.wechat.apps import app_rules
from wxgated.wechat.auth import Authenticator, Identity, TokenSource, unauthorized
from wxgated.wechat.claims import TokenError, header_value

OPENID = b"x-wx-openid"
UNIONID = b"x-wx-unionid"
PHONE = b"x-wx-phone"
MISSING = TokenError("missing").msg

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "optional": {"type": "boolean", "default": False,
                     "description": "let requests without a token through, anonymous"},
        "check_session": {"type": "boolean", "default": True,
                          "description": "refuse tokens whose session was logged out"},
        "cookie": {"type": "string", "minLength": 1, "pattern": r"^[^\s;,=]+$",
                   "description": "cookie that may carry the token"},
        "query_param": {"type": "string", "minLength": 1, "pattern": r"^[^\s&=#]+$",
                        "description": "query parameter that may carry the token (WebSocket)"},
        "apps": {"type": "array", "minItems": 1, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1},
                 "description": "only tokens of these wechat.apps names pass (401 otherwise)"},
        "claim_headers": {"type": "object",
                          "additionalProperties": {"type": "string",
                                                   "pattern": r"^[A-Za-z0-9-]+$"},
                          "default": {},
                          "description": "claim → request header sent upstream"},
    },
}


def _header(value: Any, what: str, identity: bool = False) -> bytes:
    """`header_value`, refusing the request (401) when the claim cannot be a header:
    leaving a mapped header out would let the upstream read its absence as a default."""
    try:
        if isinstance(value, list):
            return _joined(value, what)
        return header_value(value, what, identity)
    except TokenError as exc:
        raise unauthorized(exc.msg, exc.log_reason) from None


def _joined(values: list[Any], what: str) -> bytes:
    """A list claim (roles from a login hook) as one comma-separated value; an element
    holding a comma would read as two, so it is refused like a control byte."""
    parts = []
    for v in values:
        if not isinstance(v, str) or "," in v:
            raise TokenError("invalid claims", f"{what} is not a list of strings without commas")
        parts.append(header_value(v, what))
    return b",".join(parts)


@dataclass(frozen=True, slots=True)
class JWTAuthConfig:
    """The `jwt_auth` options as written (defaults: the schema's)."""

    optional: bool
    check_session: bool
    cookie: str | None
    query_param: str | None
    apps: tuple[str, ...] | None  # None: tokens of any configured app
    claim_headers: Mapping[str, str]


@register
class JWTAuth(Filter):
    name = "jwt_auth"
    config_class = JWTAuthConfig
    schema = SCHEMA

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(JWTAuthConfig, config, self.schema)
        ring = ctx.services.get("jwt")
        if ring is None:
            raise SemanticError("jwt_auth needs a top-level jwt: section with keys")
        check = cfg.check_session
        if check and ctx.services.get("sessions") is None:
            raise SemanticError("check_session needs a wechat: section (the session store); "
                                "set check_session: false to skip it", ("check_session",))
        self.optional = cfg.optional
        self.auth = Authenticator(ring, ctx.services.get("sessions"), check,
                                  TokenSource(cfg.cookie, cfg.query_param),
                                  *app_rules(ctx.services, list(cfg.apps or ())))
        mapped: list[tuple[str, bytes]] = []
        for claim, header in cfg.claim_headers.items():
            name = header.lower().encode()
            if name in (OPENID, UNIONID, PHONE):
                raise SemanticError(f"{header} is set by jwt_auth itself", ("claim_headers",
                                                                             claim))
            mapped.append((claim, name))
        self.mapped = tuple(mapped)
        self.drop = frozenset({OPENID, UNIONID, PHONE, *(n for _, n in mapped)})

    def request(self, req: Request) -> Awaitable[None] | None:
        found = self.auth.authenticate(req)
        if isinstance(found, Ready):  # no session check, or sessions in memory
            self._apply(req, found.value)
            return None
        return self._apply_later(req, found)

    async def _apply_later(self, req: Request, found: Awaitable[Identity | None]) -> None:
        self._apply(req, await found)

    def _apply(self, req: Request, found: Identity | None) -> None:
        """The identity headers for the upstream (any the client sent are dropped)."""
        headers = [h for h in req.headers if h[0] not in self.drop]
        if found is None:
            if not self.optional:
                raise unauthorized(MISSING, "token_missing")
            req.headers = headers
            return
        claims, unionid, phone = found
        req.claims = claims
        # the ring checked the token's sub and unionid once (claims.check_identity)
        headers.append((OPENID, claims["sub"].encode()))
        if unionid:
            headers.append((UNIONID, unionid.encode() if unionid == claims.get("unionid")
                            else _header(unionid, "unionid", True)))  # from the session
        if phone:  # checked when `wechat: phone` stored it
            headers.append((PHONE, phone.encode()))
        for claim, name in self.mapped:
            v = claims.get(claim)
            if v is not None:
                headers.append((name, _header(v, claim)))
        req.headers = headers
