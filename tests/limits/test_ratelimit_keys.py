"""Key specs (wxgated.limits.clientkey): what identifies a client for limits and hashing."""

from __future__ import annotations

from typing import Any

import pytest

from wxgated.http.message import Body, Request
from wxgated.limits.clientkey import SEPARATOR, compile_key, parse_key_spec


def make_req(headers: list[tuple[bytes, bytes]] | None = None, ip: str = "10.0.0.1",
             claims: dict[str, Any] | None = None) -> Request:
    req = Request("GET", "/x", "", headers or [], Body.of(b""), client_ip=ip)
    req.claims = claims
    return req


def test_ip_is_the_client_ip_not_the_peer() -> None:
    req = make_req(ip="203.0.113.9")
    req.peer_ip = "127.0.0.1"
    assert compile_key("ip")(req) == "203.0.113.9"
    assert compile_key("ip")(make_req(ip="")) is None


@pytest.mark.parametrize("spec", ["header.X-Api-Key", "header:x-api-key"])
def test_header_key_is_case_insensitive_and_missing_is_none(spec: str) -> None:
    key = compile_key(spec)
    assert key(make_req([(b"x-api-key", b"abc")])) == "abc"
    assert key(make_req([(b"other", b"abc")])) is None
    assert key(make_req([(b"x-api-key", b"")])) is None  # empty never becomes a key


def test_claim_key_reads_jwt_claims() -> None:
    key = compile_key("claim.openid")
    assert key(make_req(claims={"openid": "o-1"})) == "o-1"
    assert key(make_req(claims={"uid": 42})) is None
    assert key(make_req(claims=None)) is None
    assert compile_key("claim:uid")(make_req(claims={"uid": 42})) == "42"
    assert compile_key("claim:https://x/y")(make_req(claims={"https://x/y": "v"})) == "v"


def test_cookie_key() -> None:
    key = compile_key("cookie.sid")
    assert key(make_req([(b"cookie", b"a=1; sid=s-9; b=2")])) == "s-9"
    assert key(make_req([(b"cookie", b"a=1"), (b"cookie", b'sid="q"')])) == "q"
    assert key(make_req([(b"cookie", b"sidx=1; xsid=2")])) is None
    assert key(make_req()) is None


def test_route_key_is_one_key_for_everyone() -> None:
    key = compile_key("route", route_name="users")
    assert key(make_req(ip="1.1.1.1")) == key(make_req(ip="2.2.2.2")) == "users"


def test_combined_key_needs_every_part() -> None:
    for spec in ("claim.openid+ip", ["claim.openid", "ip"]):
        key = compile_key(spec)
        assert key(make_req(ip="1.2.3.4", claims={"openid": "o"})) == f"o{SEPARATOR}1.2.3.4"
        assert key(make_req(ip="1.2.3.4")) is None


def test_combined_key_cannot_be_forged_by_a_header_value() -> None:
    key = compile_key("header.a+header.b")
    one = key(make_req([(b"a", b"x|y"), (b"b", b"z")]))
    two = key(make_req([(b"a", b"x"), (b"b", b"y|z")]))
    assert one != two


@pytest.mark.parametrize("bad", ["", "ipaddr", "header.", "header", "query.x", "claim. ", []])
def test_bad_specs_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_key_spec(bad)


def test_parse_normalises() -> None:
    assert parse_key_spec("claim.openid + header.X-Key") == ("claim:openid", "header:x-key")
