"""The `concurrency_limit` filter: at most N requests of a route in flight, else 503.

This sheds load a backend cannot take: instead of queueing behind a slow upstream, the
N+1st request gets the 503 envelope with Retry-After: 1 at once.

`concurrency_limit: 50` limits the route as a whole; `{max: 5, key: claim.openid}`
limits each client key separately (keys as in rate_limit, `on_missing_key` the same).
Counters are per worker process. A slot is held until the answer is written: for a
streamed body that is when the stream ends, fails or is closed, not when its head
arrives. A WebSocket upgrade releases its slot once the 101 is returned.
The counters live in the registry, so a reload that leaves the options unchanged keeps
counting the requests still running under the old config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import HTTPError, Request
from wxgated.limits.clientkey import parse_key_spec
from wxgated.limits.concurrency import InFlight
from wxgated.limits.keys import request_key


@dataclass(frozen=True, slots=True)
class ConcurrencyLimitConfig:
    """The `concurrency_limit` options (defaults: the schema's); a bare number is `max`."""

    SHORTHAND: ClassVar[str] = "max"

    max: int
    key: str | tuple[str, ...] | None  # None: one counter for the whole route
    on_missing_key: str  # "ip" | "reject"


@register
class ConcurrencyLimit(Filter):
    name = "concurrency_limit"
    config_class = ConcurrencyLimitConfig
    schema = {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["max"],
                "properties": {
                    "max": {"type": "integer", "minimum": 1},
                    "key": {"anyOf": [{"type": "string", "minLength": 1},
                                      {"type": "array", "items": {"type": "string"},
                                       "minItems": 1}]},
                    "on_missing_key": {"enum": ["ip", "reject"], "default": "ip"},
                },
            },
        ]
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(ConcurrencyLimitConfig, config, self.schema)
        limit = cfg.max
        try:
            parts = parse_key_spec(cfg.key) if cfg.key is not None else None
        except ValueError as e:
            raise SemanticError(f"concurrency_limit: {e}", ("key",)) from None
        on_missing = cfg.on_missing_key
        route = ctx.route_name
        self.key_of = None if parts is None else request_key(
            parts, route, on_missing, what="concurrency limit")
        n = ctx.filter_ordinal
        ident = ("concurrency", route) if n == 0 else ("concurrency", route, n)
        self.gate: InFlight = ctx.registry.keep(
            ident, (limit, parts, on_missing), lambda: InFlight(limit))

    def request(self, req: Request) -> None:
        key_of = self.key_of
        key = ""
        if key_of is not None:
            key = req.ctx[self] = key_of(req)
        if not self.gate.try_acquire(key):
            raise HTTPError(503, "too many concurrent requests",
                            headers=[(b"retry-after", b"1")], reason="concurrency_limited")

    def done(self, req: Request, status: int) -> None:
        """The answer is written (a streamed one to its end, or abandoned): the slot
        is free again."""
        self.gate.release("" if self.key_of is None else req.ctx[self])
