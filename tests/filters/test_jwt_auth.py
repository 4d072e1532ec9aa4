"""The jwt_auth filter, built as the compiler builds it, in front of a recording handler."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.support.servers import free_port
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, Request, Response
from wxgated.registry import Registry
from wxgated.state import open_backend
from wxgated.wechat import build_services

SECRET = "jwt-auth-filter-secret-0123456789abcdef"
CFG = {
    "state": {"backend": "memory"},
    "wechat": {"appid": "wxa", "secret": "appsecret", "api_base": "http://127.0.0.1:1"},
    "jwt": {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]},
}


class Chain:
    def __init__(self, services: dict, options: dict | None = None) -> None:
        ctx = CompileContext(config=CFG, registry=Registry(), services=services,
                             route_name="r", route={"name": "r"})
        self.seen: list[Request] = []

        async def upstream(req: Request) -> Response:
            self.seen.append(req)
            return Response(200, [], b"ok")

        self.run = chain([FILTERS["jwt_auth"](options or {}, ctx)], upstream)

    async def __call__(self, headers=(), query: str = "") -> tuple[int, dict, Request | None]:
        req = Request("GET", "/api", query, list(headers), Body.of(b""), trace_id="t")
        self.seen.clear()
        resp = await self.run(req)
        if resp.error is not None:  # the gateway's envelope
            return resp.status, {**json.loads(resp.body), "www": resp.header(b"www-authenticate")}, None
        return resp.status, {}, self.seen[0]


@pytest.fixture
async def services():
    state = open_backend(CFG["state"])
    svc = {"state": state, **build_services(CFG, state)}
    yield svc
    await state.close()


async def login(services, openid: str = "o-1", unionid: str | None = "u-1", **extra) -> str:
    sess = await services["sessions"].create(openid, unionid, "c2Vzc2lvbmtleTEyMzQ1Ng==")
    claims = {"sub": openid, "sid": sess.sid, **extra}
    return services["jwt"].issue(claims)[0]


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + token.encode())


def header(req: Request, name: bytes) -> list[bytes]:
    return [v for k, v in req.headers if k == name]


async def test_upstream_sees_the_verified_identity_only(services) -> None:
    chain = Chain(services)
    token = await login(services)
    forged = [(b"x-wx-openid", b"o-admin"), (b"x-wx-unionid", b"u-admin")]
    status, _, req = await chain([bearer(token), *forged])
    assert status == 200
    assert header(req, b"x-wx-openid") == [b"o-1"]
    assert header(req, b"x-wx-unionid") == [b"u-1"]
    assert req.claims["sub"] == "o-1"


async def test_every_401_reason(services) -> None:
    chain = Chain(services)
    now = int(time.time())
    expired = jwt.encode({"sub": "o", "sid": "s", "iss": "wxgated", "iat": now - 900,
                          "exp": now - 600}, SECRET, headers={"kid": "k1"})
    forged = jwt.encode({"sub": "o", "sid": "s", "iss": "wxgated", "iat": now,
                         "exp": now + 600}, "another-secret-0123456789-0123456789",
                        headers={"kid": "k1"})
    revoked = await login(services)
    await services["sessions"].revoke(services["jwt"].verify(revoked)["sid"])
    cases = {
        "missing token": [],
        "malformed token": [bearer("garbage")],
        "token expired": [bearer(expired)],
        "bad signature": [bearer(forged)],
        "token revoked": [bearer(revoked)],
    }
    for msg, headers in cases.items():
        status, doc, _ = await chain(headers)
        assert (status, doc["code"], doc["msg"]) == (401, 401, msg)
        assert doc["www"] == b'Bearer error="invalid_token"'
    assert chain.seen == []


async def test_basic_auth_is_not_a_bearer_token(services) -> None:
    status, doc, _ = await Chain(services)([(b"authorization", b"Basic dXNlcjpwdw==")])
    assert (status, doc["msg"]) == (401, "missing token")


async def test_optional_lets_anonymous_through_but_not_bad_tokens(services) -> None:
    chain = Chain(services, {"optional": True})
    status, _, req = await chain([(b"x-wx-openid", b"o-admin")])
    assert status == 200 and req.claims is None and header(req, b"x-wx-openid") == []
    assert (await chain([bearer("garbage")]))[0] == 401
    status, _, req = await chain([bearer(await login(services))])
    assert header(req, b"x-wx-openid") == [b"o-1"]


async def test_cookie_and_query_param_sources(services) -> None:
    chain = Chain(services, {"cookie": "wx_token", "query_param": "token"})
    token = await login(services, openid="o-c")
    status, _, req = await chain([(b"cookie", b"theme=dark; wx_token=" + token.encode())])
    assert status == 200 and header(req, b"x-wx-openid") == [b"o-c"]
    status, _, req = await chain(query=f"a=1&token={token}&b=2")
    assert status == 200 and req.query == "a=1&b=2"  # the token does not travel upstream
    assert (await Chain(services)(query=f"token={token}"))[0] == 401  # not configured: ignored


async def test_claim_headers_and_unionid_from_the_session(services) -> None:
    chain = Chain(services, {"claim_headers": {"role": "X-User-Role", "evil": "X-Evil"}})
    token = await login(services, unionid="u-sess", role="admin", evil=7)
    status, _, req = await chain([bearer(token), (b"x-user-role", b"forged")])
    assert header(req, b"x-user-role") == [b"admin"]
    assert header(req, b"x-evil") == [b"7"]  # numbers are written as in JSON
    assert header(req, b"x-wx-unionid") == [b"u-sess"]
    # a value with CR/LF is never sent: the request is refused, not quietly stripped
    token = await login(services, role="admin", evil="a\r\nX-WX-OpenID: x")
    status, doc, req = await chain([bearer(token)])
    assert (status, doc["msg"], req) == (
        401, "invalid claims: evil has control characters or edge spaces", None)


async def test_without_check_session_a_logged_out_token_still_passes(services) -> None:
    token = await login(services)
    await services["sessions"].revoke(services["jwt"].verify(token)["sid"])
    assert (await Chain(services, {"check_session": False})([bearer(token)]))[0] == 200
    assert (await Chain(services)([bearer(token)]))[0] == 401


async def test_state_backend_down_is_503_not_a_pass(services) -> None:
    token = await login(services)
    dead = open_backend({"backend": "redis", "redis": {
        "url": f"redis://127.0.0.1:{free_port()}/0", "timeout": "200ms"}})
    cfg = {**CFG, "state": {"backend": "redis", "encryption_key": "ab" * 32}}
    svc = {"state": dead, **build_services(cfg, dead), "jwt": services["jwt"]}
    try:
        status, doc, _ = await Chain(svc)([bearer(token)])
    finally:
        await dead.close()
    assert (status, doc["msg"]) == (503, "session store unavailable")


def test_config_errors(services) -> None:
    ctx = CompileContext(config=CFG, registry=Registry(), services={"state": services["state"]})
    with pytest.raises(SemanticError, match="needs a top-level jwt"):
        FILTERS["jwt_auth"]({}, ctx)
    ctx.services["jwt"] = services["jwt"]
    with pytest.raises(SemanticError, match="check_session needs"):
        FILTERS["jwt_auth"]({}, ctx)
    FILTERS["jwt_auth"]({"check_session": False}, ctx)  # fine without sessions
    ctx.services["sessions"] = services["sessions"]
    with pytest.raises(SemanticError, match="set by jwt_auth"):
        FILTERS["jwt_auth"]({"claim_headers": {"x": "X-WX-OpenID"}}, ctx)


async def test_a_tokens_own_openid_claim_cannot_name_another_user(services) -> None:
    sess = await services["sessions"].create("o-1", None, "c2Vzc2lvbmtleTEyMzQ1Ng==")
    token = services["jwt"].issue({"sub": "o-1", "sid": sess.sid, "openid": "o-admin"})[0]
    status, _, req = await Chain(services)([bearer(token)])
    assert status == 200
    assert header(req, b"x-wx-openid") == [b"o-1"]
    assert req.claims["openid"] == "o-1"  # what rate-limit and cache keys read
