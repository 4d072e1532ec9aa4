"""The `cors` filter: browser cross-origin rules for H5 pages and admin consoles.

Mini programs don't send Origin, so they pass through untouched (apart from `Vary:
Origin`, which keeps shared caches from mixing answers for different origins).

- Origins: exact (`https://admin.example.com`), subdomain wildcards (`*.example.com`
  matches any origin whose host ends in `.example.com`, any scheme;
  `https://*.example.com` pins the scheme), or `"*"` for any.
- Preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here,
  204, and never reaches the upstream; a disallowed origin, method or header gets 403
  so the failure is visible in the browser console.
- `credentials: true` echoes the exact origin and refuses to combine with `"*"`
  (a credentialed wildcard would let any site read users' data).
- Defaults: `methods` are the route's `match.methods` (else DEFAULT_METHODS, the common
  six); `headers` (the schema's default) are enough for JSON bodies, Bearer tokens,
  trace ids and versions.
  The route takes OPTIONS for the preflights without listing it (`own_methods`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.config.units import DURATION_PATTERN
from wxgated.config.units import parse_duration as duration
from wxgated.filters.base import Filter, register
from wxgated.http.message import HTTPError, Request, Response

DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_VARY = [(b"vary", b"Origin")]


@dataclass(frozen=True)
class OriginRules:
    any: bool
    exact: frozenset[str]
    wildcards: tuple[tuple[str | None, str], ...]  # (scheme or None, ".suffix")

    @classmethod
    def parse(cls, origins: list[str]) -> OriginRules:
        exact: set[str] = set()
        wild: list[tuple[str | None, str]] = []
        for o in origins:
            o = o.strip().lower().rstrip("/")
            if o == "*":
                return cls(True, frozenset(), ())
            scheme, sep, host = o.partition("://")
            if not sep:
                scheme, host = "", o
            if host.startswith("*."):
                wild.append((scheme or None, host[1:]))
            elif "*" in host:
                raise ValueError(f"origin {o!r}: only a leading '*.' wildcard is supported")
            elif not scheme:
                raise ValueError(f"origin {o!r}: an exact origin needs its scheme")
            else:
                exact.add(o)
        return cls(False, frozenset(exact), tuple(wild))

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        o = origin.lower()
        if o in self.exact:
            return True
        scheme, _, host = o.partition("://")
        for want, suffix in self.wildcards:
            if (want is None or want == scheme) and host.endswith(suffix) and \
                    len(host) > len(suffix):
                return True
        return False


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """The `cors` options as written (defaults: the schema's)."""

    origins: tuple[str, ...]
    methods: tuple[str, ...] | None  # None: the route's match.methods, else DEFAULT_METHODS
    headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    credentials: bool
    max_age: str | float | None  # None: no Access-Control-Max-Age


@register
class CorsFilter(Filter):
    name = "cors"
    config_class = CorsConfig
    own_methods = ("OPTIONS",)
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["origins"],
        "properties": {
            "origins": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "methods": {"type": "array", "items": {"type": "string"},
                        "description": "allowed methods; default: the route's match.methods, "
                        "else " + ", ".join(DEFAULT_METHODS)},
            "headers": {"type": "array", "items": {"type": "string"},
                        "default": ["content-type", "authorization", "x-requested-with",
                                    "x-trace-id", "x-api-version"],
                        "description": 'allowed request headers; ["*"] allows any'},
            "expose_headers": {"type": "array", "items": {"type": "string"}, "default": []},
            "credentials": {"type": "boolean", "default": False},
            "max_age": {"type": ["string", "number"], "pattern": DURATION_PATTERN},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(CorsConfig, config, self.schema)
        try:
            self.origins = OriginRules.parse(list(cfg.origins))
            max_age = int(duration(cfg.max_age)) if cfg.max_age is not None else None
        except ValueError as e:
            raise SemanticError(str(e)) from None
        self.credentials = cfg.credentials
        if self.credentials and self.origins.any:
            raise SemanticError('cors: credentials: true cannot be combined with origin "*"',
                                path=["credentials"])
        route_methods = tuple(m for m in (ctx.route.get("match") or {}).get("methods") or ()
                              if m.upper() != "OPTIONS")
        given = cfg.methods if cfg.methods is not None else route_methods or DEFAULT_METHODS
        methods = tuple(m.upper() for m in given)
        self.methods = frozenset(methods)
        headers = tuple(h.lower() for h in cfg.headers)
        self.any_header = "*" in headers
        self.headers = frozenset(headers)
        # answers computed once; only the origin (and reflected headers) vary per request
        self.literal_any = self.origins.any and not self.credentials
        common: list[tuple[bytes, bytes]] = []
        if self.credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        self.common = common
        expose = cfg.expose_headers
        self.expose = [(b"access-control-expose-headers", ", ".join(expose).encode())] \
            if expose else []
        pre = [(b"access-control-allow-methods", ", ".join(methods).encode())]
        if not self.any_header:
            pre.append((b"access-control-allow-headers", ", ".join(headers).encode()))
        if max_age is not None:
            pre.append((b"access-control-max-age", str(max_age).encode()))
        self.preflight_headers = pre

    def _allow_origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        value = b"*" if self.literal_any else origin
        return [(b"access-control-allow-origin", value), *self.common]

    def request(self, req: Request) -> Response | None:
        origin = req.header(b"origin")
        if origin is None:
            req.add_response_headers(_VARY)
            return None
        allowed = self.origins.allows(origin.decode("latin-1"))
        if req.method == "OPTIONS" and req.header(b"access-control-request-method") is not None:
            return self._preflight(req, origin, allowed)
        # on every answer: gateway errors (401, 429, ...) must be readable too
        req.add_response_headers(_VARY + self._allow_origin(origin) + self.expose
                                 if allowed else _VARY)
        return None

    def _preflight(self, req: Request, origin: bytes, allowed: bool) -> Response:
        vary = [(b"vary", b"Origin, Access-Control-Request-Method, "
                          b"Access-Control-Request-Headers")]
        if not allowed:
            raise HTTPError(403, "CORS: origin not allowed", headers=vary,
                            reason="cors_origin")
        method = req.header_str(b"access-control-request-method").strip().upper()
        if method not in self.methods:
            raise HTTPError(403, f"CORS: method {method} not allowed", headers=vary,
                            reason="cors_method")
        asked = req.header_str(b"access-control-request-headers")
        names = [h.strip().lower() for h in asked.split(",") if h.strip()]
        headers = self._allow_origin(origin) + self.preflight_headers + vary
        if self.any_header:
            if names:
                headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
        else:
            refused = [n for n in names if n not in self.headers]
            if refused:
                raise HTTPError(403, f"CORS: header {refused[0]} not allowed", headers=vary,
                                reason="cors_header")
        return Response(204, headers)
