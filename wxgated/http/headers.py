"""RFC 9110 §7.6 intermediary rules: what a proxy forwards, drops and adds.

Hop-by-hop headers, and any header a `Connection` header names, belong to one
connection and never cross the proxy. The gateway adds X-Forwarded-For/Proto/Host,
X-Real-IP, Via, and the trace headers.
"""

from __future__ import annotations

import itertools
import re
import sys
from random import getrandbits

from wxgated.build import is_compiled
from wxgated.http.message import HTTPError, Request
from wxgated.observe.trace import trace_hex

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"host", b"content-length", b"expect",
})
# request headers the gateway rewrites itself
_REPLACED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"traceparent",
                       b"x-trace-id"})
_SKIP = HOP_BY_HOP | _REPLACED | {b"x-forwarded-for", b"via"}
_SPECIAL = frozenset({b"x-forwarded-for", b"via"})  # what needs a closer look
_RESPONSE_SPECIAL = frozenset({b"via", b"connection"})
_RESPONSE_DROP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade",
})
_RESPONSE_SKIP = _RESPONSE_DROP | {b"via"}
_WHOLE_SKIP = _RESPONSE_SKIP | {b"content-length"}
_SWITCH_SKIP = _RESPONSE_SKIP - {b"upgrade"}
VIA = b"1.1 wxgated"


_NO_TOKENS: frozenset[bytes] = frozenset()
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in Connection (they are hop-by-hop too)."""
    names: set[bytes] | None = None
    for k, v in headers:
        if k == b"connection":
            tokens = {t.strip().lower() for t in v.split(b",")}
            names = tokens if names is None else names | tokens
    if names is None or names <= _PLAIN_CONNECTION:
        return _NO_TOKENS  # the usual case: nothing beyond the standard hop-by-hop set
    return frozenset(names)


def _special(header: tuple[bytes, bytes]) -> bool:
    """Does this header change what we send: anything but a plain `Connection:
    keep-alive/close` (which most clients and nginx send) does."""
    return header[0] != b"connection" or header[1].lower() not in _PLAIN_CONNECTION


def request_block(req: Request, keep_host: bool) -> tuple[bytes, bytes]:
    """The forwarded header lines (without Host/framing) and the Host to send.

    Returns (block, host) where block is ready to follow the request line; host is
    empty unless `keep_host` (then the upstream gets the client's Host). The client's
    `Connection` list was applied when the head was parsed (http.framing.head_fields),
    so nothing the gateway added since can be removed by it. Raises HTTPError(400)
    rather than send a field that could split a line (`_check_lines`).
    """
    headers = req.headers
    parts: list[bytes] = []  # the kept fields' name, ": ", value and CRLF: joined once, with ours
    kept = 0
    special = False  # a proxy in front: rare
    host = None
    for h in headers:  # one pass: the usual head has nothing to fix
        name = h[0]
        if name not in _SKIP:
            parts += (name, b": ", h[1], b"\r\n")
            kept += 1
        elif name == b"host":
            if host is None:
                host = h[1]
        elif name in _SPECIAL:
            special = True
    xff = b""
    via = VIA
    if special:
        for k, v in headers:
            if k == b"x-forwarded-for":
                xff = v if not xff else xff + b", " + v
            elif k == b"via":
                via = v + b", " + VIA
    peer_ip = req.peer_ip
    peer = peer_ip.encode()
    client_ip = req.client_ip
    trace_id = req.trace_id
    parts += (
        b"x-forwarded-for: ", xff + b", " + peer if xff else peer,
        b"\r\nx-forwarded-proto: ", req.scheme.encode(),
        b"\r\nx-forwarded-host: " + host if host else b"",
        b"\r\nx-real-ip: ", peer if client_ip == peer_ip else client_ip.encode(),
        b"\r\nvia: ", via,
        b"\r\nx-trace-id: ", trace_id.encode(),
        b"\r\ntraceparent: 00-", req.trace_hex or trace_hex(trace_id), next(_SPAN_IDS),
        b"-01\r\n",  # `traceparent`, inlined
    )
    block = b"".join(parts)
    if _controls(block) != 2 * (kept + (7 if host else 6)):  # as `_check_lines`
        raise unsafe()
    return block, (host or b"") if keep_host else b""


def forward_target(req: Request) -> bytes:
    """The request target the upstream gets, checked (`target_bytes`). A target the
    client sent in plain form, whose path and query no filter has replaced since, is
    forwarded as the bytes it came in: the same check passed on them when it was read
    (http.target.request_target)."""
    plain = req.plain_target
    if plain is not None and plain[0] is req.path and plain[1] is req.query:
        return plain[2]
    return target_bytes(req.path, req.query)


def field_lines(fields: list[tuple[bytes, bytes]]) -> bytes:
    """Header fields as `name: value` CRLF lines, checked (`_check_lines`)."""
    for name, _ in fields:
        if not name or _NOT_TOKEN(name) is not None:
            raise unsafe()
    text = b"\r\n".join(map(b": ".join, fields)) + b"\r\n" if fields else b""
    return _check_lines(text, len(fields))


def _check_lines(text: bytes, lines: int) -> bytes:
    """The last line of defence for header lines: a value holding CR, LF, NUL or another
    control byte (HTAB aside) is refused (HTTPError 400) instead of written, whatever
    put it there (a filter, a template, a claim, a client). Checked on the joined text,
    whose separators are the `lines` CRLFs the join wrote: 2×`lines` control bytes in
    all (CR and LF included) leave none for a name or a value. (bytes.translate runs at
    memory speed; a regex over a head costs 2–10 µs, a quarter of a request.)"""
    if _controls(text) != 2 * lines:
        raise unsafe()
    return text


def unsafe() -> HTTPError:
    return HTTPError(400, "bad request: a header or the target cannot be forwarded safely")


# control bytes other than HTAB (CR and LF included: they are counted)
_CONTROLS = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"
_NOT_TOKEN = re.compile(rb"[^!#$%&'*+.^_`|~0-9A-Za-z-]").search


# True when this module runs compiled (setup.py): a C loop then counts control bytes faster
# than bytes.translate, which is the fast way for the interpreter
_COMPILED = is_compiled(sys.modules[__name__])


def _controls(text: bytes) -> int:
    """How many control bytes other than HTAB `text` holds (CR and LF included)."""
    if _COMPILED:
        n = 0
        for c in text:  # no branch: the C compiler makes it a vector loop
            n += (c < 0x20) - (c == 0x09) + (c == 0x7F)
        return n
    return len(text) - len(text.translate(None, _CONTROLS))


# a request target: visible ASCII only, and no fragment
_BAD_TARGET = re.compile(rb"[^\x21-\x22\x24-\x7e]").search


def target_bytes(path: str, query: str) -> bytes:
    """The request target an upstream gets, refused (HTTPError 400) unless it is visible
    ASCII without a fragment: the request line cannot be split or extended by it."""
    try:
        uri = (path + "?" + query if query else path).encode("ascii")
    except UnicodeEncodeError:
        raise unsafe() from None
    if _BAD_TARGET(uri) is not None or uri[:1] not in (b"/", b"*"):  # check_target
        raise unsafe()
    return uri


def check_target(uri: bytes) -> None:
    if _BAD_TARGET(uri) is not None or uri[:1] not in (b"/", b"*"):
        raise unsafe()


def check_request(uri: bytes, lines: bytes) -> None:
    """The bottom check before any request head is written upstream, whoever built its
    parts: a target that cannot split the request line, and header lines that are
    CRLF-terminated, free of other control bytes and of a blank line, so what is
    written is at most one request. (Counting the lines, which stops a smuggled extra
    header, is the builders' job: `field_lines`, `request_block`.)"""
    check_target(uri)
    if lines and (_controls(lines) != 2 * lines.count(b"\r\n") or lines[-2:] != b"\r\n"
                  or lines[:2] == b"\r\n" or b"\r\n\r\n" in lines):
        raise unsafe()


def traceparent(trace_id: str) -> bytes:
    """A W3C traceparent for a new span of our trace."""
    return b"00-" + trace_hex(trace_id) + next(_SPAN_IDS) + b"-01"


# Span ids for the traceparent an upstream gets (with their "-"): random ones made once
# and taken in turn. A span id must differ from the other spans of its trace (one
# request makes a few: its tries, an aggregate's calls), which 4096 in turn do; formatting
# a fresh random one cost 0.4 µs a request.
_SPAN_IDS = itertools.cycle([b"-%016x" % (getrandbits(64) or 1) for _ in range(4096)])


def response_headers(headers: list[tuple[bytes, bytes]], switching: bool = False,
                     length: bool = True) -> list[tuple[bytes, bytes]]:
    """An upstream's response headers as the client gets them. A 101 (`switching`) keeps
    `Upgrade`; the writer adds `connection: upgrade` itself. Without `length` the
    Content-Length goes too (a whole body, whose length the writer sets)."""
    skip = _SWITCH_SKIP if switching else _RESPONSE_SKIP if length else _WHOLE_SKIP
    out = []
    special = False
    for h in headers:
        if h[0] not in skip:
            out.append(h)
        elif h[0] in _RESPONSE_SPECIAL and _special(h):
            special = True
    via = VIA
    if special:
        conn = _NO_TOKENS
        for k, v in headers:
            if k == b"via":
                via = v + b", " + VIA
            elif k == b"connection" and v.lower() not in _PLAIN_CONNECTION:
                conn = connection_tokens(headers)
        if conn:
            if switching:
                conn = conn - {b"upgrade"}
            out = [h for h in out if h[0] not in conn]
    out.append((b"via", via))
    return out
