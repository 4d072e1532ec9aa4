"""Turning a request into a limiter key: the client key, bounded, or the missing-key policy.

Limiters never put keyless requests into one shared bucket. `on_missing="ip"` gives
them a bucket per client ip in a namespace that starts with a control character, which
no header, cookie or address can contain, so a client cannot choose a value that lands
in someone else's fallback bucket. `on_missing="reject"` refuses them: 401 when the key
names a JWT claim (the client has to log in), else 400.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from wxgated.http.message import HTTPError, Request
from wxgated.limits.clientkey import SEPARATOR, compile_key

# Keys come from requests (headers, cookies, claims). Past this length they are hashed,
# so a client cannot make a store hold kilobyte-sized keys, locally or in Redis.
MAX_KEY = 128

IP_FALLBACK = SEPARATOR + "ip" + SEPARATOR


def bound_key(key: str) -> str:
    """`key` itself when short, else a 128-bit digest of it (marked with `#`)."""
    if len(key) <= MAX_KEY:
        return key
    return "#" + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def request_key(
    parts: tuple[str, ...], route_name: str, on_missing: str = "ip", what: str = "rate limit"
) -> Callable[[Request], str]:
    """`(req) -> str` for normalised key `parts` (clientkey.parse_key_spec); raises
    HTTPError when the key is missing and the policy (or a missing ip) says reject."""
    extract = compile_key(parts, route_name)
    fallback = on_missing == "ip" and parts != ("ip",)
    login = any(p.startswith("claim:") for p in parts)
    status = 401 if login else 400
    msg = f"{what} key missing ({'+'.join(parts)})"

    def key_of(req: Request) -> str:
        k = extract(req)
        if k is None:
            if fallback and req.client_ip:
                return IP_FALLBACK + req.client_ip
            raise HTTPError(status, msg,
                            headers=[(b"www-authenticate", b"Bearer")] if login else None,
                            reason="limit_key_missing")
        return k if len(k) <= MAX_KEY else bound_key(k)

    return key_of
