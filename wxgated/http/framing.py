"""Small pieces of the server protocol: request framing and the lingering close."""

from __future__ import annotations

import re
from typing import Any

import httptools

from wxgated.http.headers import connection_tokens

LINGER_BYTES = 16 << 20  # at most this much of an unread body is drained before closing
TOO_LARGE = "request header fields too large"


class Discard:
    """Stands in for a tunnel while lingering: input is dropped, the close waits."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.left = LINGER_BYTES

    def from_client(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.transport.close()

    def client_lost(self) -> None:
        pass

    def client_paused(self) -> None:
        pass

    def client_resumed(self) -> None:
        pass

    def shutdown(self) -> None:
        self.transport.close()


class Refused(Exception):
    """Raised from a parser callback to refuse the request with `status`; httptools
    wraps it (as `__context__` of its HttpParserCallbackError)."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def refusal_of(exc: BaseException) -> tuple[int, str]:
    """The status and message for a parser error: ours when a callback refused."""
    cause = exc.__context__
    if isinstance(cause, Refused):
        return cause.status, cause.msg
    return 400, f"bad request: {exc}"


def fields_size(raw: list[tuple[bytes, bytes]]) -> int:
    """Bytes of the header fields parsed so far, as `max_header` counts them."""
    size = 4 * len(raw)
    for name, value in raw:
        size += len(name) + len(value)
    return size


def head_fields(raw: list[tuple[bytes, bytes]], version: str, room: int,
                allow_underscores: bool = False) -> list[tuple[bytes, bytes]]:
    """A complete head's fields lower-cased, exactly one valid Host (RFC 9112 §3.2), no more
    than `room` bytes of them (431), and none that could pass for the gateway's own:

    - X-WX-* are the gateway's identity headers alone: a client's are dropped;
    - a name with `_` is dropped (nginx's `underscores_in_headers off`): CGI, WSGI,
      PHP and some Java containers read `_` as `-`, so `X_WX_OpenID` would be
      `X-WX-OpenID` upstream and `Transfer_Encoding` a framing header. When allowed,
      a name that reads as an identity, hop-by-hop or gateway-set header is still dropped;
    - the headers the client's `Connection` lists are dropped here, before any filter
      runs, so that list can never reach a header the gateway adds later.

    One plain loop: map/zip chains count fewer opcodes but take 2–3× the time for a real
    head (docs/PERFORMANCE.md)."""
    headers = []
    hosts = 0
    listed = False
    size = 4 * len(raw)
    for name, value in raw:
        size += len(name) + len(value)
        name = name.lower()
        if name == b"host":
            hosts += 1
            if value not in _HOSTS_SEEN:
                _valid_host(value)
        elif name.startswith(b"x-wx-"):
            continue
        elif _UNDERSCORE in name and not _underscore_ok(name, allow_underscores):
            continue
        elif name == b"connection" and value not in _PLAIN_CONNECTION \
                and value.lower() not in _PLAIN_CONNECTION:
            listed = True
        headers.append((name, value))
    if size > room:
        raise Refused(431, TOO_LARGE)
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise Refused(400, "bad request: exactly one Host header is required")
    return _without_listed(headers) if listed else headers


# RFC 9110 §7.2: uri-host [":" port]; a reg-name, an IPv4 or a bracketed IPv6 literal
_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?"
                   ).fullmatch
_UNDERSCORE = ord("_")  # an int `in` bytes is a memchr; `b"_" in` is 10× slower
_HOSTS_SEEN: set[bytes] = set()  # valid Host values, so the usual one skips the regex


def _valid_host(value: bytes) -> None:
    if _HOST(value) is None:
        raise Refused(400, "bad request: invalid Host header")
    if len(_HOSTS_SEEN) < 1024:
        _HOSTS_SEEN.add(value)


# the usual Connection values, in the spellings clients send (a hit skips .lower())
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade", b"Keep-Alive", b"Close",
                               b"Upgrade"})
# what a Connection list may not remove: the message's own framing and routing
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection",
                      b"upgrade"})
# names a client may not send even spelled with `_` (the gateway sets or strips them)
_RESERVED = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"x-real-ip", b"via", b"traceparent", b"x-trace-id",
})


def _underscore_ok(name: bytes, allowed: bool) -> bool:
    if not allowed:
        return False
    dashed = name.replace(b"_", b"-")
    return not dashed.startswith(b"x-wx-") and dashed not in _RESERVED


def _without_listed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Drop the fields a Connection header names (RFC 9110 §7.6.1), never framing."""
    names = connection_tokens(headers) - _FRAMING
    return [h for h in headers if h[0] not in names]


def origin_form(url: bytes) -> tuple[bytes, bytes | None]:
    """An absolute-form request target (`GET http://host/path`) as origin-form, with
    its authority, which replaces the Host header (RFC 9112 §3.2.2); what is neither
    (authority-form CONNECT targets, junk) is refused."""
    if url == b"*":
        return b"*", None
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise Refused(400, "bad request: invalid request target") from None
    if not parsed.schema or not parsed.host:
        raise Refused(400, "bad request: invalid request target")
    out = parsed.path or b"/"
    if parsed.query:
        out += b"?" + parsed.query
    host = b"[" + parsed.host + b"]" if b":" in parsed.host else parsed.host
    return out, host if parsed.port is None else b"%s:%d" % (host, parsed.port)
