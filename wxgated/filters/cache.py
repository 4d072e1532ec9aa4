"""The `cache` filter: answer repeated GET/HEAD requests from a store (docs/CONFIG.md, `cache`).

Rules (what may be cached, the key, freshness) are in wxgated.cache.policy. This module
is the flow around `next`:

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
from typing import Any

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
from wxgated.http.message import Handler, HTTPError, Request, Response
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

    def wrap(self, next: Handler) -> Handler:
        space = self.space
        store, flights = space.store, space.flights
        keyspec = self.keyspec
        bypass = self._bypass
        hit = self._hit
        client_no_cache = self.client_no_cache

        async def run(req: Request) -> Response:
            if req.method != "GET" and req.method != "HEAD":
                return await bypass(req, next, False)
            key = cache_key(req, keyspec)
            if key is None:
                return await bypass(req, next, False)
            rcc = request_directives(req)
            if rcc.no_store:
                return await bypass(req, next, False)
            if client_no_cache and (rcc.no_cache or rcc.max_age == 0):
                return await bypass(req, next, True, key)
            entry = await store.get(key)
            if entry is not None and time.time() < entry.fresh_until:
                return hit(req, entry, HIT)
            fut = flights.join(key)
            if fut is not None:
                shared = await flights.wait(fut)
                if shared is not None:
                    return hit(req, shared, HIT)
                return await self._fetch(req, next, key, entry)
            stored: Entry | None = None
            try:
                resp, stored = await self._fetch_entry(req, next, key, entry)
            finally:
                flights.finish(key, stored)
            return resp

        return run

    def _hit(self, req: Request, entry: Entry, status: bytes) -> Response:
        self._count[status].inc()
        body = entry.body_for(req.trace_id)
        headers = hit_headers(entry.headers, entry.stored_at, status)
        if len(body) != len(entry.body):
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        return Response(entry.status, headers, body)

    async def _bypass(self, req: Request, next: Handler, refresh: bool,
                      key: str | None = None) -> Response:
        """Past the cache; `refresh` still stores a storable answer (client no-cache)."""
        self._count[BYPASS].inc()
        if refresh and key is not None:
            resp, _ = await self._fetch_entry(req, next, key, None, BYPASS)
            return resp
        resp = await next(req)
        resp.headers.append((b"x-cache-status", BYPASS))
        return resp

    async def _fetch(self, req: Request, next: Handler, key: str,
                     stale: Entry | None) -> Response:
        resp, _ = await self._fetch_entry(req, next, key, stale)
        return resp

    async def _fetch_entry(self, req: Request, next: Handler, key: str, stale: Entry | None,
                           label: bytes | None = None) -> tuple[Response, Entry | None]:
        """Go upstream; store what may be stored. `label` forces the X-Cache-Status."""
        if stale is not None and time.time() >= stale.stale_until:
            stale = None
        try:
            resp = await next(req)
        except Exception as exc:
            if stale is not None and (not isinstance(exc, HTTPError) or exc.status >= 500):
                return self._hit(req, stale, STALE), None
            raise
        if stale is not None and resp.status >= 500:
            if resp.stream is not None and hasattr(resp.stream, "aclose"):
                await resp.stream.aclose()
            return self._hit(req, stale, STALE), None
        entry = await self._store(req, resp, key)
        status = label or (MISS if entry is not None else BYPASS)
        if label is None:
            self._count[status].inc()
        resp.headers.append((b"x-cache-status", status))
        return resp, entry

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
