"""Black-box: the access log line of a refusal the gateway made says why (`reason`), in
a fixed snake_case vocabulary (docs/OPERATIONS.md), and an answered request has no
`reason` at all. One `wxgated run` subprocess, a real upstream, tokens signed here."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.support.e2e_identity_harness import JWT_SECRET, StandIn, base_config, upstream_app
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp, free_port

AUD = "mini-app"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    standin = StandIn()
    upstream = ThreadedApp(upstream_app())
    cfg = base_config(standin.url, upstream.url,
                      [{"kid": "hs1", "alg": "HS256", "secret": JWT_SECRET}])
    cfg["jwt"]["audience"] = AUD
    cfg["upstreams"]["dead"] = {
        "targets": [{"url": f"http://127.0.0.1:{free_port()}"}],  # nothing listens
        "circuit_breaker": {"min_requests": 1, "failure_ratio": 0.5, "open_for": "30s"}}
    cfg["routes"] += [
        {"name": "limited", "match": {"path": "/limited"},
         "filters": [{"rate_limit": {"rate": 1, "per": "1m"}}], "upstream": "svc"},
        {"name": "dead", "match": {"path": "/dead"}, "upstream": "dead"},
        {"name": "getonly", "match": {"path": "/getonly", "methods": ["GET"]},
         "upstream": "svc"},
    ]
    g = GatewayProcess(tmp_path_factory.mktemp("gw"), cfg)
    g.start()
    yield g
    g.stop()
    upstream.stop()
    standin.server.stop()


def token(secret: str = JWT_SECRET, alg: str = "HS256", kid: str = "hs1",
          **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "o-reason", "sid": "no-such-session", "iss": "wxgated", "aud": AUD,
               "iat": now, "exp": now + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=alg, headers={"kid": kid})


def call(gw: GatewayProcess, path: str, auth: str | None = None,
         method: str = "GET") -> tuple[int, str]:
    """(status, the request's trace id)."""
    tid = "reason-" + os.urandom(6).hex()
    headers = {"X-Trace-Id": tid}
    if auth is not None:
        headers["Authorization"] = auth
    req = urllib.request.Request(gw.url + path, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, tid
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, tid


def logged(gw: GatewayProcess, tid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gw.log_lines():
            if line.get("trace_id") == tid and "status" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {tid}")


BEARER = "Bearer "
CASES = [
    ("token_missing", None),
    ("token_malformed", BEARER + "not-a-jwt"),
    ("bad_signature", BEARER + token(secret="another-secret-of-sufficient-length-0123")),
    ("unknown_key", BEARER + token(kid="nope")),
    ("bad_algorithm", BEARER + token(JWT_SECRET * 2, alg="HS512")),  # a key long enough for it
    ("token_expired", BEARER + token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
    ("not_yet_valid", BEARER + token(nbf=int(time.time()) + 3600)),
    ("wrong_issuer", BEARER + token(iss="someone-else")),
    ("wrong_audience", BEARER + token(aud="another-app")),
    ("claim_missing", BEARER + token(sub=None)),
    ("bad_claim", BEARER + token(sub=12345)),
    ("session_revoked", BEARER + token()),
]


@pytest.mark.parametrize(("reason", "auth"), CASES, ids=[c[0] for c in CASES])
def test_each_401_reason_of_jwt_auth_is_in_the_access_log(gw: GatewayProcess, reason: str,
                                                          auth: str | None) -> None:
    status, tid = call(gw, "/api/me", auth)
    assert status == 401
    line = logged(gw, tid)
    assert line["status"] == 401 and line["route"] == "api"
    assert line["reason"] == reason


def test_an_answered_request_has_no_reason(gw: GatewayProcess) -> None:
    status, tid = call(gw, "/pub/ok")
    assert status == 200
    assert "reason" not in logged(gw, tid)


def test_gateway_refusals_other_than_401_say_why(gw: GatewayProcess) -> None:
    seen = {}
    for path, method in (("/nowhere", "GET"), ("/getonly", "DELETE")):
        status, tid = call(gw, path, method=method)
        seen[status] = logged(gw, tid).get("reason")
    assert seen == {404: "no_route", 405: "method_not_allowed"}

    status, tid = call(gw, "/limited")
    assert status == 200 and "reason" not in logged(gw, tid)
    status, tid = call(gw, "/limited")
    assert status == 429 and logged(gw, tid)["reason"] == "rate_limited"

    # a target that refuses connections: 502, after which its breaker is open (503)
    status, tid = call(gw, "/dead")
    assert status == 502 and logged(gw, tid)["reason"] == "upstream_unreachable"
    status, tid = call(gw, "/dead")
    assert status == 503 and logged(gw, tid)["reason"] == "breaker_open"


def test_reasons_are_bounded_words_not_client_text(gw: GatewayProcess) -> None:
    """Whatever a client sends, the field is one of the documented snake_case words."""
    for auth in (BEARER + "x.y.z", BEARER + token(sub='a"b\\c'), "Basic Zm9vOmJhcg=="):
        _, tid = call(gw, "/api/me", auth)
        reason = logged(gw, tid)["reason"]
        assert reason.replace("_", "").isalpha() and reason.islower(), reason
    text = gw.stdout()
    assert json.dumps('a"b\\c')[1:-1] not in text.split('"reason"')[-1]
