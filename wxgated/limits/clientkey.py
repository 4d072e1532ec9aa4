"""Request keys: who a request belongs to, for rate limits, concurrency limits and the
consistent-hash balancer.

A key spec is compiled once into a plain function `(req) -> str | None`. Specs:

- `ip`: the client address after `trusted_proxies` (req.client_ip);
- `header.<name>` or `header:<name>`: a request header (first value);
- `claim.<name>` or `claim:<name>`: a JWT claim (req.claims, set by jwt_auth);
- `cookie.<name>` or `cookie:<name>`: a cookie;
- `route`: the route name (one key for the whole route);
- a combination, as a list or joined with `+` (`claim.openid+ip`).

The function returns None when any part is missing or empty, so callers must decide
what a keyless request gets; an empty string is never a key, which is how "every client
without the header shares one bucket" is ruled out at the source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from wxgated.http.message import Request

KeyFunc = Callable[[Request], str | None]

# Joins the parts of a combined key. Control characters cannot occur in HTTP header or
# cookie values, so one client cannot forge another's combined key by embedding it.
SEPARATOR = "\x1f"

_PART = re.compile(r"^(header|claim|cookie)[.:](.*\S.*)$")


def parse_key_spec(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Normalised parts (`ip`, `route`, `header:x-api-key`, ...); ValueError when invalid."""
    raw = spec.split("+") if isinstance(spec, str) else list(spec)
    if not raw:
        raise ValueError("empty key spec")
    parts = []
    for item in raw:
        part = str(item).strip()
        if part in ("ip", "route"):
            parts.append(part)
            continue
        m = _PART.match(part)
        if m is None:
            raise ValueError(
                f"bad key {part!r}: expected ip, route, header.<name>, claim.<name> "
                "or cookie.<name>, joined with '+'"
            )
        kind, name = m.group(1), m.group(2).strip()
        parts.append(f"{kind}:{name.lower() if kind == 'header' else name}")
    return tuple(parts)


def compile_key(spec: str | Sequence[str], route_name: str = "") -> KeyFunc:
    """The extractor for `spec`. `route_name` fixes the `route` part at compile time."""
    getters = [_getter(p, route_name) for p in parse_key_spec(spec)]
    if len(getters) == 1:
        return getters[0]

    def combined(req: Request) -> str | None:
        values = []
        for get in getters:
            v = get(req)
            if v is None:
                return None
            values.append(v)
        return SEPARATOR.join(values)

    return combined


def _getter(part: str, route_name: str) -> KeyFunc:
    if part == "ip":
        return _client_ip
    if part == "route":
        if route_name:
            return lambda req: route_name
        return _route_name
    kind, _, name = part.partition(":")
    if kind == "header":
        return _header(name.encode("latin-1"))
    if kind == "claim":
        return _claim(name)
    return _cookie(name.encode("latin-1"))


def _client_ip(req: Request) -> str | None:
    return req.client_ip or None


def _route_name(req: Request) -> str | None:
    route = req.route
    return getattr(route, "name", None) or None


def _header(name: bytes) -> KeyFunc:
    def get(req: Request) -> str | None:
        for k, v in req.headers:
            if k == name:
                return v.decode("latin-1") if v else None
        return None

    return get


def _claim(name: str) -> KeyFunc:
    def get(req: Request) -> str | None:
        claims = req.claims
        if not claims:
            return None
        v = claims.get(name)
        if v is None or v == "":
            return None
        return v if isinstance(v, str) else str(v)

    return get


def _cookie(name: bytes) -> KeyFunc:
    def get(req: Request) -> str | None:
        for k, v in req.headers:
            if k != b"cookie":
                continue
            for pair in v.split(b";"):
                n, eq, value = pair.strip().partition(b"=")
                if eq and n == name:
                    value = value.strip(b'"')
                    return value.decode("latin-1") if value else None
        return None

    return get
