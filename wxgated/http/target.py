"""The request target the router judges is the one the upstream acts on.

Routing on the raw path and forwarding it raw lets a normalising upstream (nginx,
Spring, most frameworks) act on another path than the one the gateway checked:
`/public/../private/x`, `/public/%2e%2e/private/x`, `//private`, `%70rivate` all
reach `/private` there, past a `jwt_auth` that guarded only `/private`. So the path is
normalised once, before routing, and that normalised form is what goes upstream
(Envoy's `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action`):

- percent-encoded unreserved characters are decoded (`%70` → `p`), other escapes get
  upper-case hex, and anything a path may not carry raw (non-ASCII, `"`, `<`, `{`, …)
  is percent-encoded, so the result is visible ASCII only;
- `.` and `..` segments are removed (RFC 3986 §5.2.4), never above the root;
- empty segments are merged (`//` → `/`) unless `merge_slashes` is off;
- an encoded `/` (`%2F`), a backslash (raw or `%5C`) and an encoded dot segment
  (`%2e%2e`) are refused with 400 by default (`escaped_slashes: reject`); `keep`
  forwards `%2F`/`%5C` as they are, `unescape` turns them into `/` first.

A fragment is cut off before any of this and never forwarded. The query string is kept
as sent, except that bytes a request line may not carry are percent-encoded.

The usual path (letters, digits, `-._~` and `/`-separated segments, no dot segment)
is recognised by one regex search and returned unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wxgated.http.framing import Refused

ESCAPED_SLASH_ACTIONS = ("reject", "keep", "unescape")

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = "!$&'()*+,;=:@"  # allowed raw in a segment besides unreserved (pchar)
_PCHAR = frozenset(_UNRESERVED | set(_SUB_DELIMS))
# a path that needs no work: pchars and single slashes, no segment starting with "."
_NEEDS_WORK = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/]|//|/\.").search
# a target that needs no work when it also has no "//" or "/." (checked apart: cheaper)
_PLAIN_TARGET = re.compile(rb"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[\x21\x22\x24-\x7e]*)?"
                           ).fullmatch
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
# bytes a request line may not carry in a query: CTLs, space, '#', non-ASCII
_QUERY_UNSAFE = re.compile(r"[^\x21-\x22\x24-\x7e]")


@dataclass(frozen=True)
class PathRules:
    """`server:` choices for request paths; the defaults are the safe ones."""

    normalize: bool = True
    merge_slashes: bool = True
    escaped_slashes: str = "reject"  # one of ESCAPED_SLASH_ACTIONS


DEFAULT_RULES = PathRules()


def request_target(url: bytes, rules: PathRules) -> tuple[str, str, str, bytes | None]:
    """(path as sent, normalised path, query, plain) of an origin-form target: the one
    call the server makes per request. The usual target (pchars, single slashes, no dot
    segment, a plain query) costs one regex and a decode; then `plain` is `url`, which
    is already what the upstream may get (visible ASCII, no fragment), else None."""
    if _PLAIN_TARGET(url) is not None:
        path, _, query = url.decode().partition("?")  # ASCII: the fast decode
        if "//" not in path and "/." not in path:
            return path, path, query, url
    path, query = split_target(url)
    return path, normalize_path(path, rules), query, None


def split_target(url: bytes) -> tuple[str, str]:
    """(path, query) of an origin-form target, the fragment dropped."""
    path, _, query = url.partition(b"#")[0].partition(b"?")
    q = query.decode("latin-1")
    if _QUERY_UNSAFE.search(q):
        q = _QUERY_UNSAFE.sub(_pct_char, q)
    return path.decode("latin-1"), q


def normalize_path(path: str, rules: PathRules = DEFAULT_RULES) -> str:
    """The path the router sees and the upstream gets; raises Refused(400)."""
    if _NEEDS_WORK(path) is None and path[:1] == "/":
        return path
    if path == "*":  # OPTIONS * (RFC 9112 §3.2.4): no path to route
        return path
    if path[:1] != "/":
        raise Refused(400, "bad request: the path must start with /")
    segments = _segments(path, rules)
    if rules.normalize:
        segments = _remove_dots(segments)
    if rules.merge_slashes:
        last = len(segments) - 1  # a trailing slash stays significant
        segments = [s for i, s in enumerate(segments) if s or i == last]
    return "/" + "/".join(segments)


def _segments(path: str, rules: PathRules) -> list[str]:
    """The path's segments (after the leading "/"), each in canonical escaped form."""
    action = rules.escaped_slashes
    if "\\" in path:
        if action == "reject":
            raise Refused(400, "bad request: backslash in path")
        if action == "unescape":
            path = path.replace("\\", "/")
    out: list[str] = []
    for raw in path[1:].split("/"):
        seg, encoded_dot = _canonical(raw, action)
        if encoded_dot and seg in (".", "..") and rules.normalize:
            if action == "reject":
                raise Refused(400, "bad request: encoded dot segment in path")
        if action == "unescape" and ("%2F" in seg or "%5C" in seg):
            out.extend(seg.replace("%5C", "/").replace("%2F", "/").split("/"))
            continue
        out.append(seg)
    return out


def _canonical(seg: str, action: str) -> tuple[str, bool]:
    """One segment with unreserved escapes decoded, other escapes upper-cased and
    characters outside pchar encoded; and whether it decoded a `.`."""
    if "%" not in seg and all(c in _PCHAR for c in seg):
        return seg, False
    out: list[str] = []
    encoded_dot = False
    i = 0
    n = len(seg)
    while i < n:
        c = seg[i]
        if c == "%":
            hx = seg[i + 1:i + 3]
            if len(hx) != 2 or hx[0] not in _HEXDIGITS or hx[1] not in _HEXDIGITS:
                raise Refused(400, "bad request: invalid percent-encoding in path")
            ch = chr(int(hx, 16))
            if ch in _UNRESERVED:
                out.append(ch)
                encoded_dot = encoded_dot or ch == "."
            else:
                if ch in "/\\" and action == "reject":
                    raise Refused(400, "bad request: encoded slash in path")
                out.append("%" + hx.upper())
            i += 3
            continue
        out.append(c if c in _PCHAR else _pct(c))
        i += 1
    return "".join(out), encoded_dot


def _remove_dots(segments: list[str]) -> list[str]:
    """RFC 3986 §5.2.4 on split segments: `.` dropped, `..` pops, never above root; a
    path ending in a dot segment keeps its trailing slash (`/a/b/..` → `/a/`)."""
    out: list[str] = []
    for seg in segments:
        if seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    if segments and segments[-1] in (".", "..") and (not out or out[-1] != ""):
        out.append("")
    return out


def _pct(c: str) -> str:
    """A character as percent-escapes: latin-1 code points are the client's bytes."""
    return _escape(c.encode("latin-1") if ord(c) < 256 else c.encode("utf-8"))


def _escape(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def _pct_char(m: re.Match[str]) -> str:
    return _pct(m.group(0))


def encode_param(value: str) -> str:
    """A decoded route param re-encoded for splicing into a path: one segment, pchar
    only, so no `/`, `?`, `#`, `%`, space, CR or LF can change the target."""
    if all(c in _PCHAR for c in value) and value not in (".", ".."):
        return value
    out = "".join(c if c in _PCHAR else _escape(c.encode("utf-8")) for c in value)
    return out.replace(".", "%2E") if out in (".", "..") else out
