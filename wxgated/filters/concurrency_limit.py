"""The `concurrency_limit` filter: at most N requests of a route in flight, else 503.

This sheds load a backend cannot take: instead of queueing behind a slow upstream, the
N+1st request gets the 503 envelope with Retry-After: 1 at once.

`concurrency_limit: 50` limits the route as a whole; `{max: 5, key: claim.openid}`
limits each client key separately (keys as in rate_limit, `on_missing_key` the same).
Counters are per worker process. A slot is held until the response is finished: for a
streamed body that is when the stream ends, fails or is closed, not when the handler
returns. A WebSocket upgrade releases its slot once the 101 is returned.
The counters live in the registry, so a reload that leaves the options unchanged keeps
counting the requests still running under the old config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from wxgated.clientkey import parse_key_spec
from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.limits.concurrency import InFlight
from wxgated.limits.keys import request_key


class ReleasingStream:
    """Wraps a response stream; releases the slot exactly once when the stream is done."""

    __slots__ = ("_stream", "_gate", "_key", "_done")

    def __init__(self, stream: AsyncIterator[bytes], gate: InFlight, key: str) -> None:
        self._stream = stream
        self._gate = gate
        self._key = key
        self._done = False

    def __aiter__(self) -> ReleasingStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except BaseException:  # the end (StopAsyncIteration), an error, or a cancel
            self._finish()
            raise

    async def aclose(self) -> None:
        self._finish()
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._gate.release(self._key)

    def __del__(self) -> None:
        # A stream the server dropped without closing must not hold its slot forever.
        self._finish()


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

    def wrap(self, next: Handler) -> Handler:
        gate = self.gate
        acquire = gate.try_acquire
        release = gate.release
        key_of = self.key_of

        async def run(req: Request) -> Response:
            key = "" if key_of is None else key_of(req)
            if not acquire(key):
                raise HTTPError(503, "too many concurrent requests",
                                headers=[(b"retry-after", b"1")], reason="concurrency_limited")
            try:
                resp = await next(req)
            except BaseException:
                release(key)
                raise
            if resp.stream is None:
                release(key)
            else:
                resp.stream = ReleasingStream(resp.stream, gate, key)
            return resp

        return run
