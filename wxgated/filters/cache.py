"""The `cache` filter: answer repeated GET/HEAD requests from a store (docs/CONFIG.md, `cache`).

Rules (what may be cached, the key, freshness) are in wxgated.cache.policy. This module
is the lookup (request phase) and the store (response phase):

- fresh entry → HIT (with Age); no entry → one upstream call per key at a time
  (coalescing), stored when storable → MISS;
- the client's `no-cache` (or `max-age=0`, or `Pragma: no-cache`) skips the lookup and
  refreshes the entry; its `no-store` skips the cache both ways → BYPASS;
- an answer that may not be stored (private, no-store, Set-Cookie, too large, ...) is
  passed on as BYPASS, and so is any personal request without a verified user;
- with `stale_if_error`, an expired entry kept that much longer answers as STALE when
  the upstream fails (5xx, timeout, connection error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import Counter

from wxgated.cache.body import buffer_upto
from wxgated.cache.coalesce import Coalescer
from wxgated.cache.entry import Entry, trace_fragment
from wxgated.cache.memory import MemoryStore
from wxgated.cache.policy import (
    KeySpec,
    cache_key,
    freshness,
    hit_headers,
    request_directives,
    stored_headers,
)
from wxgated.cache.state_store import StateStore
from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.config.units import DURATION_PATTERN, SIZE_PATTERN
from wxgated.config.units import parse_duration as duration
from wxgated.config.units import parse_size as size
from wxgated.filters.base import Filter, register
from wxgated.http.message import Request, Response
from wxgated.observe.metrics import REGISTRY

# Only this filter counts lookups; defined with it, so the family is on /metrics (with
# no series yet) as soon as the filters package is imported.
CACHE_REQUESTS = Counter(
    "wxgated_cache_requests_total", "Cache lookups by route and result.",
    ["route", "result"], registry=REGISTRY,
)

_DURATION = {"type": ["string", "number"], "pattern": DURATION_PATTERN}
_SIZE = {"type": ["string", "integer"], "pattern": SIZE_PATTERN}

HIT, MISS, BYPASS, STALE = b"HIT", b"MISS", b"BYPASS", b"STALE"


class _Miss(NamedTuple):
    """A request the cache let through: its key, the expired entry it may serve if the
    upstream fails, whether it leads the key's flight, the label it forces."""

    key: str
    stale: Entry | None
    leads: bool
    label: bytes | None


class CacheSpace:
    """A route's store and its in-flight misses; kept across reloads (memory store)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.flights = Coalescer()

    def close(self) -> None:
        self.store.close()
        self.flights.close()


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The `cache` options as written (defaults: the schema's); sizes and durations
    are parsed in CacheFilter.__init__."""

    ttl: str | float | None  # None: the upstream's freshness, uncapped
    store: str  # "memory" | "state"
    max_entry: str | int
    max_size: str | int
    stale_if_error: str | float
    vary: tuple[str, ...]
    honor_client_no_cache: bool


@register
class CacheFilter(Filter):
    name = "cache"
    config_class = CacheConfig
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ttl": {**_DURATION, "description": "freshness when the upstream gives none; "
                    "caps the upstream's max-age/s-maxage"},
            "store": {"enum": ["memory", "state"], "default": "memory"},
            "max_entry": {**_SIZE, "default": "1MiB", "description": "larger bodies pass "
                          "through uncached, streamed"},
            "max_size": {**_SIZE, "default": "64MiB", "description": "memory store cap"},
            "stale_if_error": {**_DURATION, "default": 0, "description": "serve an expired "
                               "entry this much longer when the upstream fails (0: never)"},
            "vary": {"type": "array", "items": {"type": "string",
                                                "pattern": r"^(header|claim)\.[^.\s]+$"},
                     "default": []},
            "honor_client_no_cache": {"type": "boolean", "default": True},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(CacheConfig, config, self.schema)
        route = ctx.route_name
        try:
            self.ttl = duration(cfg.ttl) if cfg.ttl is not None else None
            self.max_entry = size(cfg.max_entry)
            self.stale_for = duration(cfg.stale_if_error)
            max_size = size(cfg.max_size)
            self.keyspec = KeySpec.parse(route, list(cfg.vary))
        except ValueError as e:
            raise SemanticError(str(e)) from None
        self.client_no_cache = cfg.honor_client_no_cache
        if cfg.store == "state":
            backend = ctx.services.get("state")
            if backend is None:
                raise SemanticError("cache store 'state' needs a state backend",
                                    path=["store"])
            self.space = CacheSpace(StateStore(backend, f"cache:{route}:"))
        else:
            self.space = ctx.registry.keep(
                ("cache", route), ("memory", max_size, ctx.route),
                lambda: CacheSpace(MemoryStore(max_size)),
            )
        self._count = {s: CACHE_REQUESTS.labels(route, s.decode().lower())
                       for s in (HIT, MISS, BYPASS, STALE)}

    async def request(self, req: Request) -> Response | None:
        """A hit answers here; otherwise what the response phase needs goes in
        `req.ctx[self]`: a `_Miss`, or BYPASS (pass it on, labelled)."""
        key = cache_key(req, self.keyspec) if req.method in ("GET", "HEAD") else None
        rcc = request_directives(req) if key is not None else None
        if key is None or rcc is None or rcc.no_store:
            self._bypass(req)
            return None
        if self.client_no_cache and (rcc.no_cache or rcc.max_age == 0):
            self._count[BYPASS].inc()  # still stored when storable: a refresh
            req.ctx[self] = _Miss(key, None, False, BYPASS)
            return None
        entry = await self.space.store.get(key)
        if entry is not None and time.time() < entry.fresh_until:
            return self._hit(req, entry, HIT)
        flights = self.space.flights
        fut = flights.join(key)
        if fut is not None:
            shared = await flights.wait(fut)
            if shared is not None:
                return self._hit(req, shared, HIT)
        req.ctx[self] = _Miss(key, entry, fut is None, None)
        return None

    async def response(self, req: Request, resp: Response) -> Response | None:
        miss = req.ctx.pop(self, None)
        if miss is BYPASS:
            if resp.error is None:
                resp.headers.append((b"x-cache-status", BYPASS))
            return None
        if miss is None:
            return None
        stored: Entry | None = None
        try:
            stale = miss.stale
            if stale is not None and time.time() >= stale.stale_until:
                stale = None
            if resp.status >= 500 and stale is not None:  # the upstream failed: STALE
                if resp.stream is not None and hasattr(resp.stream, "aclose"):
                    await resp.stream.aclose()
                return self._hit(req, stale, STALE)
            if resp.error is not None:  # the gateway refused it: nothing to store
                return None
            stored = await self._store(req, resp, miss.key)
            status = miss.label or (MISS if stored is not None else BYPASS)
            if miss.label is None:
                self._count[status].inc()
            resp.headers.append((b"x-cache-status", status))
            return None
        finally:
            if miss.leads:
                self.space.flights.finish(miss.key, stored)

    def _hit(self, req: Request, entry: Entry, status: bytes) -> Response:
        self._count[status].inc()
        body = entry.body_for(req.trace_id)
        headers = hit_headers(entry.headers, entry.stored_at, status)
        if len(body) != len(entry.body):
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        return Response(entry.status, headers, body)

    def _bypass(self, req: Request) -> None:
        """Past the cache both ways."""
        self._count[BYPASS].inc()
        req.ctx[self] = BYPASS

    async def _store(self, req: Request, resp: Response, key: str) -> Entry | None:
        now = time.time()
        fresh = freshness(resp.status, resp.headers, self.ttl, self.keyspec, now)
        if fresh is None or not await buffer_upto(resp, self.max_entry):
            return None
        stored_at, fresh_until = fresh
        body_len = None if req.method == "HEAD" or resp.status == 204 else len(resp.body)
        entry = Entry(resp.status, stored_headers(resp.headers, body_len), resp.body,
                      stored_at, fresh_until, fresh_until + self.stale_for,
                      trace_fragment(resp.body, req.trace_id))
        await self.space.store.put(key, entry)
        return entry
