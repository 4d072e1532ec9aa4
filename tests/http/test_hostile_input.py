"""What reaches an upstream is exactly what the gateway decided, whatever a client sends.

Black-box: `wxgated run` in front of a raw upstream that records the bytes it reads
(tests/support/recording_upstream.py). Each class of attack is tried with generated variants:
paths that would read differently at a normalising upstream, route params spliced
into the target, header names that frameworks read as identity or framing headers,
Connection lists naming the gateway's own headers; and a property test throws random
bytes at the target, the headers and the token's claims.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.gateway import GatewayProcess
from tests.support.recording_upstream import Received, RecordingUpstream

SECRET = "hostile-input-secret-0123456789abcdef"
PRIVATE = "/private/"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    up = RecordingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "jwt": {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]},
        "upstreams": {"rec": {"targets": [{"url": upstream.url}],
                              "passive_health": {"enabled": False}}},
        "routes": [
            {"name": "private", "match": {"path": "/private/*rest"},
             "filters": [{"jwt_auth": {"check_session": False,
                                       "claim_headers": {"role": "X-Role"}}}],
             "upstream": "rec"},
            {"name": "users", "match": {"path": "/u/:id"},
             "filters": [{"rewrite": {"regex": "^/u/.*$", "to": "/users/{param.id}/x"}}],
             "upstream": "rec"},
            {"name": "svc", "match": {"path": "/svc/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "rec"},
            {"name": "public", "match": {"path": "/*rest"}, "upstream": "rec"},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-hostile"), config).start()
    yield proc
    proc.stop()


def token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "wxgated", "iat": now, "exp": now + 600, **claims}, SECRET,
                      algorithm="HS256", headers={"kid": "k1"})


def send(gw: GatewayProcess, head: bytes) -> list[int]:
    """Send one raw request (the head without its blank line, Host and Connection
    added); the statuses of every answer the gateway wrote before it closed."""
    data = head + b"\r\nhost: api.example.com\r\nconnection: close\r\n\r\n"
    out = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(data)
        while chunk := s.recv(65536):
            out += chunk
    return [int(line.split(b" ")[1]) for line in out.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")]


def exchange(gw: GatewayProcess, up: RecordingUpstream, head: bytes
             ) -> tuple[int, list[Received]]:
    """One request: its one status, and what the upstream read because of it."""
    up.take()
    statuses = send(gw, head)
    assert len(statuses) == 1, statuses  # one request, one answer
    return statuses[0], up.take()


# --- 3: the path the router judges is the one the upstream gets --------------------

DOTS = ["..", "%2e%2e", "%2E%2e", ".%2e", "%2e."]
SEPS = ["/", "%2f", "%2F", "%5c", "\\"]


def traversals() -> Iterator[str]:
    """`/public/<dots><sep>private/x`, every spelling, plus the other tricks."""
    for dots, sep in itertools.product(DOTS, SEPS):
        yield f"/public/{dots}{sep}private/x"
        yield f"/public/a/{dots}/{dots}{sep}private/x"
    yield from ["//private/x", "/./private/x", "/%70rivate/x", "/%70%72ivate/x",
                "/public/..//private/x", "/.//private/x", "///private/x", "/private/./x",
                "/x/../private/x#frag", "/public/%2e/../private/x"]


@pytest.mark.parametrize("path", list(traversals()))
def test_no_spelling_of_a_guarded_path_reaches_it_without_a_token(
        gw: GatewayProcess, upstream: RecordingUpstream, path: str) -> None:
    status, got = exchange(gw, upstream, f"GET {path} HTTP/1.1".encode())
    assert status in (400, 401), path
    assert got == [], [r.target for r in got]


@pytest.mark.parametrize("sent, forwarded", [
    ("/public/a/./b/../c", "/public/a/c"),
    ("/public//a///b/", "/public/a/b/"),
    ("/public/%7euser/%41", "/public/~user/A"),
    ("/public/%c3%a9t%C3%A9", "/public/%C3%A9t%C3%A9"),
    ("/public/a b", None),  # a space splits no request line: httptools refuses it
    ("/public/a#fragment?x=1", "/public/a"),
    ("/public/a?q=1#frag", "/public/a?q=1"),
    ("/public/..", "/"),
    ("/public/a/..", "/public/"),
    ("/public/a?x=%0d%0a", "/public/a?x=%0d%0a"),
])
def test_the_upstream_gets_the_normalised_path(gw: GatewayProcess, upstream: RecordingUpstream,
                                              sent: str, forwarded: str | None) -> None:
    statuses = send(gw, f"GET {sent} HTTP/1.1".encode())
    got = upstream.take()
    if forwarded is None:
        assert statuses == [400] and got == []
        return
    assert statuses == [200]
    assert [r.target for r in got] == [forwarded]
    assert got[0].well_formed


@pytest.mark.parametrize("path", ["/svc/../../etc/passwd", "/svc/a/../../admin",
                                  "/svc/%2e%2e/admin", "/svc/..%2fadmin", "/svc/x/%2E%2E/%2E%2E/y"])
def test_strip_prefix_routes_cannot_escape_their_prefix(
        gw: GatewayProcess, upstream: RecordingUpstream, path: str) -> None:
    status, got = exchange(gw, upstream, f"GET {path} HTTP/1.1".encode())
    # either refused, or routed as what it normalises to (never /svc's upstream path "/..")
    assert status in (200, 400), path
    for r in got:
        assert ".." not in r.target and "%2E" not in r.target.upper(), r.target


# --- 1: a route param spliced into the target stays one segment -------------------

PARAM_PIECES = ["%0d%0a", "X-Injected:%201", "%20HTTP%201.1", "%5Cg%3C0%3E", "\\g<0>", "%00",
                "%25", "%E4%BD%A0", "%3F", "%23", "..", ".", "%2e", "a", "%09", "'", "@:"]


def param_variants() -> Iterator[str]:
    for a, b in itertools.product(PARAM_PIECES, repeat=2):
        yield a + b


def expected_target(raw_param: str) -> str:
    """An independent oracle: urllib's quote with RFC 3986 pchar as safe."""
    value = urllib.parse.unquote(raw_param.replace("\\", "%5C"), errors="surrogateescape")
    seg = urllib.parse.quote(value, safe="!$&'()*+,;=:@", errors="surrogateescape")
    if seg in (".", ".."):
        seg = seg.replace(".", "%2E")
    return f"/users/{seg}/x"


@pytest.mark.parametrize("param", list(param_variants()))
def test_a_route_param_reaches_the_target_as_one_encoded_segment(
        gw: GatewayProcess, upstream: RecordingUpstream, param: str) -> None:
    status, got = exchange(gw, upstream, f"GET /u/{param} HTTP/1.1".encode())
    if status == 400:  # refused whole (a backslash, an encoded dot segment, …)
        assert got == []
        return
    assert status == 200, param
    assert len(got) == 1 and got[0].well_formed
    if param in (".", ".."):  # a real dot segment, resolved before routing
        assert not got[0].target.startswith("/users/")
        return
    assert got[0].target == expected_target(param)
    assert got[0].values("x-injected") == []


# --- 2: the gateway's identity headers are its own ------------------------------

def test_a_connection_list_cannot_remove_what_the_gateway_adds(
        gw: GatewayProcess, upstream: RecordingUpstream) -> None:
    t = token(sub="o-real", unionid="u-real", role="user")
    for listed in ["x-wx-openid", "X-WX-OpenID, x-wx-unionid", "x-role", "x-forwarded-for",
                   "x-real-ip, x-trace-id", "keep-alive, x-wx-openid , x-role"]:
        head = (f"GET /private/me HTTP/1.1\r\nauthorization: Bearer {t}\r\n"
                f"connection: {listed}\r\nx-wx-openid: o-admin\r\nx-role: admin").encode()
        status, got = exchange(gw, upstream, head)
        assert status == 200, listed
        [r] = got
        assert r.values("x-wx-openid") == [b"o-real"], listed
        assert r.values("x-wx-unionid") == [b"u-real"], listed
        assert r.values("x-role") == [b"user"], listed
        assert len(r.values("x-forwarded-for")) == 1 and len(r.values("x-real-ip")) == 1


UNDERSCORED = ["X_WX_OpenID", "x_wx_unionid", "X-WX_OpenID", "Transfer_Encoding", "Content_Length",
               "X_Forwarded_For", "X_Real_IP", "Host_", "x_custom"]


@pytest.mark.parametrize("name", UNDERSCORED)
def test_header_names_with_underscores_are_dropped(
        gw: GatewayProcess, upstream: RecordingUpstream, name: str) -> None:
    status, got = exchange(gw, upstream,
                           f"GET /public/a HTTP/1.1\r\n{name}: 7\r\nx-kept: yes".encode())
    assert status == 200
    [r] = got
    assert all("_" not in k for k, _ in r.headers)
    assert r.values("x-kept") == [b"yes"]
    assert r.values("x-wx-openid") == [] and r.values("transfer-encoding") == []


# --- the property: random bytes anywhere -----------------------------------------

_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# hostile pieces mixed with raw random bytes: pure noise mostly stops at the parser
_path = st.lists(st.sampled_from([
    b"a", b"/", b"//", b".", b"..", b"%2e", b"%2F", b"%5c", b"\\", b"%", b"%0d%0a", b"%00",
    b"#", b"?", b"%70", b"\xc3\xa9", b"private", b"\r\n", b" ", b"\t", b"%20"])
    | st.binary(max_size=3), max_size=5).map(b"".join)
_name = st.sampled_from([
    b"x-wx-openid", b"X_WX_OpenID", b"x-wx_unionid", b"x-role", b"X_Role", b"connection",
    b"transfer_encoding", b"Content_Length", b"x-forwarded-for", b"x-real-ip", b"via",
    b"x-trace-id", b"x-a"]) | st.binary(min_size=1, max_size=8)
_value = st.sampled_from([
    b"o-admin", b"x-wx-openid, x-role", b"keep-alive, x-wx-unionid", b"a\tb", b"1",
    b"203.0.113.9", b"fe80::1%eth0"]) | st.binary(max_size=12)
_claim = st.text(st.sampled_from(["a", "Z", "\r", "\n", "\x00", "\x7f", "\t", " ", ":", "é",
                                  "你", "\u2028"]), max_size=8)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_path, names=st.lists(_name, max_size=4),
       values=st.lists(_value, min_size=4, max_size=4),
       sub=_claim, role=_claim, guarded=st.booleans())
def test_random_bytes_never_reach_an_upstream_unchecked(
        gw: GatewayProcess, upstream: RecordingUpstream, path: bytes, names: list[bytes],
        values: list[bytes], sub: str, role: str, guarded: bool) -> None:
    prefix = b"/private/" if guarded else b"/public/"
    head = b"GET " + prefix + path + b" HTTP/1.1"
    for name, value in zip(names, values, strict=False):
        head += b"\r\n" + name + b": " + value
    if guarded:
        head += b"\r\nauthorization: Bearer " + token(sub=sub, role=role).encode()
    upstream.take()
    try:
        statuses = send(gw, head)
    except ConnectionResetError:
        statuses = []  # a head the parser refused outright
    got = upstream.take()
    event(f"answered {statuses[:1]}, upstream got {len(got)}")
    assert len(statuses) <= 1
    assert len(got) <= 1
    if not got:
        return
    [r] = got
    assert r.well_formed, r.raw
    assert statuses == [200]
    if r.target.startswith("/private/"):  # past jwt_auth: the token's identity, once
        assert guarded and sub and _CTL.search(sub + role) is None, (sub, role)
        assert r.values("x-wx-openid") == [sub.encode()]
        assert r.values("x-role") == [role.encode()]
    else:  # X-WX-* are the gateway's alone on any route (x-role is jwt_auth's own)
        assert r.values("x-wx-openid") == [] and r.values("x-wx-unionid") == []
    assert all("_" not in k for k, _ in r.headers)


# --- framing and Host: one request in, at most one request out --------------------

SMUGGLING = [
    b"POST /public/a HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /private/x HTTP/1.1\r\nhost: a\r\n\r\n",
    b"POST /public/a HTTP/1.1\r\ncontent-length: 4\r\ncontent-length: 40\r\n\r\nbody",
    b"POST /public/a HTTP/1.1\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST /public/a HTTP/1.1\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST /public/a HTTP/1.1\r\ncontent-length: +4\r\n\r\nbody",
    b"POST /public/a HTTP/1.1\r\ncontent-length: 4\r\n foo\r\n\r\nbody",
    b"GET /public/a HTTP/1.1\r\nx: a\rGET /private/x HTTP/1.1\r\n\r\n",
    b"GET /public/a HTTP/1.1\nx: a\n\n",
]


@pytest.mark.parametrize("data", SMUGGLING)
def test_ambiguous_framing_is_refused(gw: GatewayProcess, upstream: RecordingUpstream,
                                      data: bytes) -> None:
    upstream.take()
    head, _, rest = data.partition(b"\r\n")
    data = head + b"\r\nhost: api.example.com\r\n" + rest
    out = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(data)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    got = upstream.take()
    assert out.startswith(b"HTTP/1.1 400 "), out[:60]
    assert out.count(b"HTTP/1.1 ") == 1
    assert got == []


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b:80/x", b"[::1", b"a\"b", b"a:80:90",
                                  b"a:123456", b"a\\b", b"a?b", b"a#b"])
def test_a_host_that_is_no_authority_is_refused(gw: GatewayProcess,
                                               upstream: RecordingUpstream, host: bytes) -> None:
    upstream.take()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /public/a HTTP/1.1\r\nhost: " + host + b"\r\nconnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400 "), (host, out[:60])
    assert upstream.take() == []


def test_a_refused_request_gets_a_trace_id_and_a_log_line(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /public/%2e%2e/private/x HTTP/1.1\r\nhost: a\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    [trace] = [line.split(b": ", 1)[1] for line in head.split(b"\r\n")
               if line.lower().startswith(b"x-trace-id: ")]
    assert len(trace) == 32 and json.loads(body)["trace_id"] == trace.decode()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in gw.log_lines() if ln.get("trace_id") == trace.decode()]
        if lines:
            break
        time.sleep(0.05)
    assert [(ln["status"], ln["path"]) for ln in lines] == [(400, "/public/%2e%2e/private/x")]
