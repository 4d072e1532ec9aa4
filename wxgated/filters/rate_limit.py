"""The `rate_limit` filter: GCRA buckets per client key, kept in process or in Redis.

Options (docs/CONFIG.md semantics: the bucket holds `burst` tokens, refills `rate` per `per`):

- `rate` (required), `per` (default 1s), `burst` (default `rate`);
- `key`: who gets a bucket (a wxgated.limits.clientkey spec, default `ip`);
- `store`: `local` (this process) or `redis` (shared by every instance). Default:
  `redis` when `state.backend` is redis (several instances must share one limit), else
  `local`. A local store is per worker process;
- `max_keys`: bound on a local store (default 100000; least recently seen keys go);
- `on_missing_key`: `ip` (default) gives a request without the key a bucket for its
  client ip, in a namespace no key value can reach; `reject` refuses it: 401 when the
  key names a JWT claim (the client must log in), else 400. Never one shared bucket;
- `on_backend_error`: `allow` (default) or `deny` (503 + Retry-After: 1) when Redis fails
  or exceeds `state.redis.timeout`. After a failure the filter decides without Redis for
  `PROBE_AFTER` seconds, so a hung Redis costs one timeout per second, not one per
  request. Degraded decisions count in wxgated_ratelimit_degraded_total{route,decision}.

Responses on a limited route carry RateLimit-Limit (the burst), RateLimit-Remaining and
RateLimit-Reset (whole seconds until the bucket is full again); a refused request gets
the 429 envelope with Retry-After (whole seconds until a token is back, at least 1).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.config.spec import frozen
from wxgated.config.units import POSITIVE_DURATION_PATTERN, parse_duration
from wxgated.filters.base import Filter, register
from wxgated.http.message import Headers, HTTPError, Request
from wxgated.limits.clientkey import parse_key_spec
from wxgated.limits.gcra import Decision, Rate
from wxgated.limits.keys import request_key
from wxgated.limits.local import DEFAULT_MAX_KEYS, LocalStore
from wxgated.observe.metrics import REGISTRY
from wxgated.state import StateError, redis_options

log = logging.getLogger("wxgated.ratelimit")

PROBE_AFTER = 1.0  # seconds without Redis calls after a failure

# Only this filter counts these; defined with it, so both families are on /metrics (with
# no series yet) as soon as the filters package is imported.
RATELIMIT_REJECTED = Counter(
    "wxgated_ratelimit_rejected_total", "Requests refused by rate_limit.",
    ["route"], registry=REGISTRY,
)
RATELIMIT_DEGRADED = Counter(
    "wxgated_ratelimit_degraded_total",
    "Rate-limit decisions made without the backend (on_backend_error).",
    ["route", "decision"], registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The `rate_limit` options as written (defaults: the schema's); RateLimit.__init__
    parses them into a Rate and a key spec."""

    rate: int
    per: str | float
    burst: int | None  # None: rate
    key: str | tuple[str, ...]
    store: str | None  # "local" | "redis"; None: redis when state.backend is redis
    max_keys: int
    on_missing_key: str  # "ip" | "reject"
    on_backend_error: str  # "allow" | "deny"


class _Headers:
    """The RateLimit-* header pairs, made once for every value a bucket can show."""

    def __init__(self, rate: Rate) -> None:
        self.limit = (b"ratelimit-limit", str(rate.burst).encode())
        full = math.ceil(rate.tolerance / 1e6)
        self.remaining = _table(b"ratelimit-remaining", rate.burst)
        self.reset = _table(b"ratelimit-reset", full)
        self.retry = _table(b"retry-after", full)

    def ok(self, d: Decision) -> Headers:
        return [self.limit, _pick(self.remaining, d[2]), _pick(self.reset, math.ceil(d[3]))]

    def refused(self, d: Decision) -> Headers:
        return [_pick(self.retry, max(1, math.ceil(d[4]))), self.limit, self.remaining[0],
                _pick(self.reset, math.ceil(d[3]))]


def _table(name: bytes, top: int) -> list[tuple[bytes, bytes]]:
    # Capped: a huge burst or a day-long `per` must not cost megabytes per route.
    return [(name, str(i).encode()) for i in range(min(top, 1022) + 2)]


def _pick(table: list[tuple[bytes, bytes]], n: int) -> tuple[bytes, bytes]:
    return table[n] if n < len(table) else (table[0][0], str(n).encode())


def _redis_state(ctx: Any, state_cfg: dict[str, Any]) -> Any:
    from wxgated.state.redis import RedisState

    state = ctx.services.get("state")
    if isinstance(state, RedisState):
        return state
    if not (state_cfg.get("redis") or {}).get("url"):
        raise SemanticError("rate_limit: store: redis needs state.redis.url", ("store",))
    opts = redis_options(state_cfg)
    return ctx.registry.keep(("ratelimit-redis",), frozen(opts), lambda: RedisState(**opts))


_DURATION = {"anyOf": [{"type": "string", "pattern": POSITIVE_DURATION_PATTERN},
                       {"type": "number", "exclusiveMinimum": 0}]}


@register
class RateLimit(Filter):
    name = "rate_limit"
    config_class = RateLimitConfig
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["rate"],
        "properties": {
            "rate": {"type": "integer", "minimum": 1, "description": "tokens per `per`"},
            "per": {**_DURATION, "default": "1s"},
            "burst": {"type": "integer", "minimum": 1, "description": "bucket size; default rate"},
            "key": {"anyOf": [{"type": "string", "minLength": 1},
                              {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                    "default": "ip"},
            "store": {"enum": ["local", "redis"], "description": "default: redis when "
                      "state.backend is redis, else local"},
            "max_keys": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_KEYS},
            "on_missing_key": {"enum": ["ip", "reject"], "default": "ip"},
            "on_backend_error": {"enum": ["allow", "deny"], "default": "allow"},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        state_cfg = ctx.config.get("state") or {}
        cfg = self.cfg = options(RateLimitConfig, config, self.schema)
        try:
            rate = Rate(cfg.rate, parse_duration(cfg.per), cfg.burst or 0)
        except ValueError as e:
            raise SemanticError(f"rate_limit: {e}", ("per",)) from None
        try:
            key = parse_key_spec(cfg.key)
        except ValueError as e:
            raise SemanticError(f"rate_limit: {e}", ("key",)) from None
        store = cfg.store or ("redis" if state_cfg.get("backend") == "redis" else "local")
        route = ctx.route_name
        n = ctx.filter_ordinal
        self.key_of = request_key(key, route, cfg.on_missing_key)
        self.headers = _Headers(rate)
        self.rejected = RATELIMIT_REJECTED.labels(route)
        self.local: LocalStore | None = None
        self.remote: Any = None
        if store == "local":
            ident = ("ratelimit", route) if n == 0 else ("ratelimit", route, n)
            spec = (rate, key, store, cfg.max_keys, cfg.on_missing_key, cfg.on_backend_error)
            self.local = ctx.registry.keep(
                ident, spec, lambda: LocalStore(rate, cfg.max_keys))
        else:
            from wxgated.limits.distributed import RedisStore

            bucket_ns = route if n == 0 else f"{route}#{n}"
            # Only a remote store can degrade: local routes get no always-zero series.
            self.degraded_allow = RATELIMIT_DEGRADED.labels(route, "allow")
            self.degraded_deny = RATELIMIT_DEGRADED.labels(route, "deny")
            self.remote = RedisStore(_redis_state(ctx, state_cfg), rate, bucket_ns)
        self._down_until = 0.0
        self._healthy = True

    def request(self, req: Request) -> Awaitable[None] | None:
        local = self.local
        if local is None:
            return self._remote(req)
        req.add_response_headers(self._admit(local.decide(self.key_of(req))))
        return None

    async def _remote(self, req: Request) -> None:
        d = await self._remote_decision(self.key_of(req))
        if d is not None:  # None: degraded and allowed, no RateLimit-* to report
            req.add_response_headers(self._admit(d))

    def _admit(self, d: Decision) -> Headers:
        """The RateLimit-* headers of an allowed request; a refusal raises the 429."""
        if not d[0]:
            raise self._refuse(d)
        return self.headers.ok(d)

    def _refuse(self, d: Decision) -> HTTPError:
        self.rejected.inc()
        return HTTPError(429, "rate limit exceeded", headers=self.headers.refused(d),
                         reason="rate_limited")

    async def _remote_decision(self, key: str) -> Decision | None:
        """The Redis decision; None when made without Redis and allowed (on_backend_error)."""
        if time.monotonic() >= self._down_until:
            try:
                d: Decision = await self.remote.decide(key)
            except StateError as e:
                self._failed(e)
            else:
                if not self._healthy:
                    self._recovered()
                return d
        self._degraded()
        return None

    def _degraded(self) -> None:
        """Decide without the backend: count, then let through or raise the 503."""
        if self.cfg.on_backend_error == "allow":
            self.degraded_allow.inc()
            return
        self.degraded_deny.inc()
        raise HTTPError(503, "rate limiter unavailable", headers=[(b"retry-after", b"1")],
                        reason="limiter_unavailable")

    def _failed(self, err: StateError) -> None:
        self._down_until = time.monotonic() + PROBE_AFTER
        if self._healthy:
            self._healthy = False
            log.warning("rate limiter backend failed, deciding by on_backend_error=%s: %s",
                        self.cfg.on_backend_error, err)

    def _recovered(self) -> None:
        self._healthy = True
        log.info("rate limiter backend answering again")
