"""Hostile tokens through a real gateway: every one is a 401 envelope, never a 500, and
the upstream (a real server counting what it receives) never sees any of them.

Hand-picked cases name the classic holes; hypothesis then draws headers and claims
from all of JSON (plus control bytes and lone surrogates), signed with the real key
so the claim checks are reached, not only the signature check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp

SECRET = "hostile-jwt-secret-0123456789-0123456789"
PHRASES = ("missing token", "malformed token", "token expired", "bad signature",
           "token revoked", "invalid claims")
PATHS = ("/fast/x", "/slow/x")  # without and with a response-phase filter
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: Any, payload: Any, secret: str = SECRET) -> str:
    """A token with this exact header and payload JSON, HS256-signed with `secret`."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64url(sig)


def good_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "wxgated", "sub": "o-1", "sid": "s-1", "iat": now, "exp": now + 600, **extra}


GOOD_HEADER = {"alg": "HS256", "kid": "k1", "typ": "JWT"}


class Upstream:
    """Counts every request it receives, by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.server = ThreadedApp(app)

    async def _any(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.json_response({"headers": [[k.lower(), v] for k, v in request.headers.items()]})


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.stop()


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    auth = {"jwt_auth": {"check_session": False, "claim_headers": {"role": "X-User-Role"}}}
    config = {
        "jwt": {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]},
        "upstreams": {"svc": {"targets": [{"url": upstream.server.url}]}},
        "routes": [
            {"name": "fast", "match": {"path": "/fast/*rest"}, "filters": [auth],
             "upstream": "svc"},
            {"name": "slow", "match": {"path": "/slow/*rest"}, "upstream": "svc",
             "filters": [auth, {"response_headers": {"set": {"X-Slow": "1"}}}]},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), config).start()
    yield proc
    proc.stop()
    assert "Traceback" not in proc.stderr()


class Caller:
    """One keep-alive connection to the gateway (thousands of requests, no port churn)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str, token: str) -> tuple[int, dict[str, Any], str | None]:
        headers = {"Authorization": "Bearer " + token}
        try:
            return self._get(path, headers)
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            return self._get(path, headers)

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], str | None]:
        self.conn.putrequest("GET", path)
        for k, v in headers.items():
            self.conn.putheader(k, v.encode("latin-1"))
        self.conn.endheaders()
        r = self.conn.getresponse()
        body = r.read()
        return r.status, json.loads(body), r.getheader("www-authenticate")


@pytest.fixture(scope="module")
def caller(gw: GatewayProcess) -> Caller:
    return Caller(gw.port)


def refused(caller: Caller, upstream: Upstream, token: str) -> None:
    """Both paths answer this token with the 401 envelope, and nothing reaches upstream."""
    before = sum(upstream.hits.values())
    for path in PATHS:
        status, doc, www = caller.get(path, token)
        assert status == 401, (path, token, doc)
        assert doc["code"] == 401 and doc["msg"].startswith(PHRASES), doc
        assert www == 'Bearer error="invalid_token"'
    assert sum(upstream.hits.values()) == before, token


def test_a_good_token_passes(caller: Caller, upstream: Upstream) -> None:
    """The harness itself: a valid token does reach the upstream on both paths."""
    token = sign(GOOD_HEADER, good_claims(role=3))
    for path in PATHS:
        status, doc, _ = caller.get(path, token)
        assert status == 200
        assert ["x-wx-openid", "o-1"] in doc["headers"] and ["x-user-role", "3"] in doc["headers"]
    upstream.hits.clear()


HEADERS = {
    "kid list": {"alg": "HS256", "kid": ["k1"]},
    "kid number": {"alg": "HS256", "kid": 1},
    "kid object": {"alg": "HS256", "kid": {"k": "k1"}},
    "kid unknown": {"alg": "HS256", "kid": "k1\r\nx"},
    "crit unknown": {**GOOD_HEADER, "crit": ["exp"]},
    "crit empty": {**GOOD_HEADER, "crit": []},
    "crit not a list": {**GOOD_HEADER, "crit": "b64"},
    "crit b64": {**GOOD_HEADER, "crit": ["b64"], "b64": False},
    "b64 without crit": {**GOOD_HEADER, "b64": False},
    "alg none": {"alg": "none", "kid": "k1"},
    "alg list": {"alg": ["HS256"], "kid": "k1"},
    "alg object": {"alg": {"HS256": 1}},
    "alg number": {"alg": 256, "kid": "k1"},
    "alg missing": {"kid": "k1"},
    "alg other key's": {"alg": "RS256", "kid": "k1"},
    "header a list": ["HS256"],
    "header a string": "HS256",
    "header null": None,
    "header a number": 1e999,
}


@pytest.mark.parametrize("name", HEADERS)
def test_hostile_headers(name: str, caller: Caller, upstream: Upstream) -> None:
    refused(caller, upstream, sign(HEADERS[name], good_claims()))


NOW = int(time.time())
CLAIMS = {
    "exp string": good_claims(exp=str(NOW + 600)),
    "exp list": good_claims(exp=[NOW + 600]),
    "exp bool": good_claims(exp=True),
    "exp null": good_claims(exp=None),
    "exp huge float": good_claims(exp=1e999),  # json.dumps writes Infinity
    "exp NaN": good_claims(exp=float("nan")),
    "exp huge int": good_claims(exp=10**400),
    "iat string": good_claims(iat="now"),
    "iat object": good_claims(iat={"t": NOW}),
    "nbf string": good_claims(nbf="0"),
    "nbf list": good_claims(nbf=[0]),
    "sub CRLF": good_claims(sub="o-1\r\nX-WX-OpenID: admin"),
    "sub LF": good_claims(sub="o-1\nx"),
    "sub NUL": good_claims(sub="o-1\x00admin"),
    "sub ESC": good_claims(sub="o-1\x1b[0m"),
    "sub DEL": good_claims(sub="o\x7f"),
    "sub lone surrogate": good_claims(sub="o-\ud800"),
    "sub edge space": good_claims(sub=" o-1"),
    "sub empty": good_claims(sub=""),
    "sub number": good_claims(sub=12),
    "sub list": good_claims(sub=["o-1"]),
    "sub object": good_claims(sub={"id": "o-1"}),
    "sub null": good_claims(sub=None),
    "unionid CR": good_claims(unionid="u\rx"),
    "unionid list": good_claims(unionid=["u"]),
    "sid object": good_claims(sid={"a": 1}),
    "role CRLF": good_claims(role="admin\r\nX-WX-OpenID: o-admin"),
    "role object": good_claims(role={"a": 1}),
    "role list of non-strings": good_claims(role=["admin", 1]),
    "role list element with a comma": good_claims(role=["admin,root"]),
    "role list element CRLF": good_claims(role=["admin\r\nX-WX-OpenID: o-admin"]),
    "role nested list": good_claims(role=[["admin"]]),
    "role tab edge": good_claims(role="admin\t"),
    "iss list": good_claims(iss=["wxgated"]),
    "payload a list": [good_claims()],
    "payload a string": "sub",
}


@pytest.mark.parametrize("name", CLAIMS)
def test_hostile_claims(name: str, caller: Caller, upstream: Upstream) -> None:
    refused(caller, upstream, sign(GOOD_HEADER, CLAIMS[name]))


def test_hostile_shapes(caller: Caller, upstream: Upstream) -> None:
    deep = "[" * 4000  # json.loads: RecursionError, not ValueError (and < 16KiB of head)
    good = sign(GOOD_HEADER, good_claims())
    head, payload, sig = good.split(".")
    for token in (
        b64url(deep.encode()) + "." + payload + "." + sig,
        head + "." + b64url(deep.encode()) + "." + sig,
        b64url(b"\xff\xfe{}") + "." + payload + "." + sig,  # not UTF-8
        "e30." + payload + "." + sig,  # {} : no alg
        head + "." + payload,  # two segments
        head + "." + payload + "." + sig + ".x",
        head + "=." + payload + "." + sig,  # padding is not base64url
        head + "." + payload + "." + sig[:-2],
        "A." + payload + "." + sig,  # impossible base64 length
        "a.b.c", ".", "..", "é.é.é", "Bearer", "\x80\x81.\xff.\xfe",
    ):
        refused(caller, upstream, token)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)
_BAD_CHAR = st.sampled_from(["\r", "\n", "\x00", "\x01", "\x1f", "\x7f", "\ud800", "\udfff"])
_BAD_TEXT = st.builds(lambda a, c, b: a + c + b, st.text(max_size=4), _BAD_CHAR,
                      st.text(max_size=4))
_NOT_TEXT = _JSON.filter(lambda v: not isinstance(v, str))
_NOT_NUMBER = _JSON.filter(lambda v: isinstance(v, bool) or not isinstance(v, int | float))


@SETTINGS
@given(kid=_JSON, alg=_JSON, extra=st.dictionaries(st.sampled_from(["crit", "b64", "typ", "jku"]),
                                                   _JSON, max_size=2))
def test_drawn_headers(kid: Any, alg: Any, extra: dict[str, Any], caller: Caller,
                       upstream: Upstream) -> None:
    header = {"kid": kid, "alg": alg, **extra}
    if kid in ("k1", None) and alg == "HS256" and not {"crit", "b64"} & extra.keys():
        header["kid"] = "k2"  # a drawn header that is simply valid is not the point here
    refused(caller, upstream, sign(header, good_claims()))


@SETTINGS
@given(claim=st.sampled_from(["sub", "unionid", "role", "exp", "iat", "nbf", "sid"]),
       value=st.one_of(_BAD_TEXT, _NOT_TEXT, st.just(""), st.text(max_size=4).map(" ".__add__)),
       data=st.data())
def test_drawn_claims(claim: str, value: Any, data: st.DataObject, caller: Caller,
                      upstream: Upstream) -> None:
    if claim in ("exp", "iat", "nbf"):
        value = data.draw(_NOT_NUMBER, "not a number")
    elif claim == "role" and (value is None or value == "" or isinstance(value, int | float)):
        value = data.draw(_BAD_TEXT, "bad text")  # absent, "", numbers, booleans: fine roles
    elif claim == "role" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        # a list of clean strings is a fine role list (sent comma-joined): spoil one element
        value = [*value, data.draw(st.one_of(_BAD_TEXT, st.just("a,b")), "bad element")]
    elif claim in ("sid", "unionid") and value is None:
        value = [None]  # absent is fine
    elif claim == "sid" and isinstance(value, str):
        value = {"s": value}  # any sid string is fine (it is only looked up)
    refused(caller, upstream, sign(GOOD_HEADER, good_claims(**{claim: value})))


@SETTINGS
@given(token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                   exclude_characters="\x7f"), min_size=1, max_size=300))
def test_drawn_garbage(token: str, caller: Caller, upstream: Upstream) -> None:
    refused(caller, upstream, token)


def test_nothing_reached_the_upstream(upstream: Upstream) -> None:
    assert sum(upstream.hits.values()) == 0
