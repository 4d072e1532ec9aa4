"""What may be cached, under which key, and for how long.

Kept apart from the filter so the rules read in one place:
- key: route, scheme, host (the authority the client asked for), method, path, query
  sorted by parameter name, then the configured `vary` values. The host is in the key
  because backends build answers from it (X-Forwarded-Host: absolute links, redirects):
  without it one `Host: evil.example` request would fill the entry every other host
  then gets (cache poisoning); a request with Authorization (or a Cookie) is keyed per user by the JWT
  openid, and is never cached when there is no verified user to key it by;
- storable answers: a status from CACHEABLE_STATUSES, no Set-Cookie, no `no-store`,
  `private` or `no-cache` from the upstream, a `Vary` we can honour, and a positive
  freshness lifetime (s-maxage, else max-age, capped by the route's ttl).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from wxgated.cache.control import CacheControl, parse_cache_control
from wxgated.http.message import Headers, Request

# Heuristically cacheable in RFC 9110 §15.1, minus the rarely useful ones (405, 414, 501).
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 410})

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
    b"trailer", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
# Per-response facts that must not be replayed to the next client.
_NOT_STORED = _HOP_BY_HOP | {b"age", b"x-cache-status", b"x-trace-id", b"set-cookie"}


@dataclass(frozen=True, slots=True)
class KeySpec:
    route: str
    headers: tuple[bytes, ...] = ()  # lower-case names from `vary: [header.x]`
    claims: tuple[str, ...] = ()  # from `vary: [claim.x]`

    @classmethod
    def parse(cls, route: str, vary: list[str]) -> KeySpec:
        headers: list[bytes] = []
        claims: list[str] = []
        for item in vary:
            kind, _, name = item.partition(".")
            if kind == "header" and name:
                headers.append(name.lower().encode("latin-1"))
            elif kind == "claim" and name:
                claims.append(name)
            else:
                raise ValueError(f"vary item {item!r}: use header.<name> or claim.<name>")
        return cls(route, tuple(headers), tuple(claims))


def sorted_query(query: str) -> str:
    """Parameters sorted by name; repeated names keep their order, since `a=1&a=2` and
    `a=2&a=1` may mean different lists to a backend."""
    if "&" not in query:
        return query
    parts = [p for p in query.split("&") if p]
    parts.sort(key=lambda p: p.partition("=")[0])
    return "&".join(parts)


_DEFAULT_PORT = {"http": ":80", "https": ":443"}


def authority(req: Request) -> str:
    """The Host the client asked for, as one spelling per origin: hosts are
    case-insensitive and the scheme's default port is the same origin without it."""
    host = req.host.lower().rstrip(".") if req.host else ""
    port = _DEFAULT_PORT.get(req.scheme)
    if port is not None and host.endswith(port):
        host = host[: -len(port)].rstrip(".")
    return host


def cache_key(req: Request, spec: KeySpec) -> str | None:
    """The key for `req`, or None when it must bypass the cache (personal request with
    no verified user to key it by)."""
    user = ""
    claims = req.claims
    if claims is not None:
        openid = claims.get("openid") or claims.get("sub")
        if not openid:
            return None
        user = str(openid)
    elif req.header(b"authorization") is not None:
        return None
    elif req.header(b"cookie") is not None and b"cookie" not in spec.headers:
        return None
    parts = [spec.route, req.scheme, authority(req), req.method, req.path,
             sorted_query(req.query), user]
    for name in spec.headers:
        v = req.header(name)
        parts.append("" if v is None else v.decode("latin-1"))
    for claim in spec.claims:
        v = None if claims is None else claims.get(claim)
        if v is None and claim == "openid" and claims is not None:
            v = claims.get("sub")  # the gateway's own tokens keep the openid in `sub`
        parts.append("" if v is None else str(v))
    raw = "\x00".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def request_directives(req: Request) -> CacheControl:
    values = [v for k, v in req.headers if k == b"cache-control"]
    if values:
        return parse_cache_control(values)
    pragma = req.header(b"pragma")
    if pragma is not None and b"no-cache" in pragma.lower():
        return CacheControl(no_cache=True)
    return parse_cache_control(None)


def _vary_ok(headers: Headers, keyed: tuple[bytes, ...]) -> bool:
    encoded = False
    vary: list[bytes] = []
    for k, v in headers:
        if k == b"vary":
            vary.extend(x.strip().lower() for x in v.split(b","))
        elif k == b"content-encoding" and v.strip().lower() not in (b"", b"identity"):
            encoded = True
    for name in vary:
        if not name or name in keyed:
            continue
        if name == b"accept-encoding" and not encoded:
            continue  # an identity body is right for every Accept-Encoding
        return False  # "*" or a header the key does not carry
    return True


def freshness(status: int, headers: Headers, ttl: float | None, spec: KeySpec,
              now: float) -> tuple[float, float] | None:
    """(stored_at, fresh_until) when the answer may be stored, else None."""
    if status not in CACHEABLE_STATUSES:
        return None
    cc_values: list[bytes] = []
    age = 0
    for k, v in headers:
        if k == b"cache-control":
            cc_values.append(v)
        elif k == b"set-cookie":
            return None
        elif k == b"age" and v.isdigit():
            age = int(v)
    cc = parse_cache_control(cc_values)
    if cc.no_store or cc.private or cc.no_cache:
        return None
    if not _vary_ok(headers, spec.headers):
        return None
    lifetime: float | None = cc.lifetime
    if ttl is not None:
        lifetime = ttl if lifetime is None else min(float(lifetime), ttl)
    if lifetime is None:
        return None
    stored_at = now - age
    fresh_until = stored_at + lifetime
    if fresh_until <= now:
        return None
    return stored_at, fresh_until


def stored_headers(headers: Headers, body_len: int | None) -> Headers:
    """Headers worth replaying; `body_len` None keeps the upstream's Content-Length
    (a HEAD answer describes a body it does not carry)."""
    if body_len is None:
        return [(k, v) for k, v in headers if k not in _NOT_STORED]
    out = [(k, v) for k, v in headers if k not in _NOT_STORED and k != b"content-length"]
    out.append((b"content-length", str(body_len).encode()))
    return out


def hit_headers(headers: Headers, stored_at: float, status: bytes) -> Headers:
    age = int(time.time() - stored_at)
    out = list(headers)
    out.append((b"age", str(age if age > 0 else 0).encode()))
    out.append((b"x-cache-status", status))
    return out
