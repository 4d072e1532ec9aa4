"""The shared cache store: entries in the StateBackend (memory or Redis).

With `store: state` and the redis state backend, every worker and machine shares one
cache. Backend trouble never fails a request: a failed read is a miss, a failed write is
forgotten (and logged once per burst at debug level, since the state backend's own
health is reported elsewhere).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from wxgated.cache.entry import Entry, dumps, loads
from wxgated.state.base import StateError

log = logging.getLogger("wxgated.cache")


class StateStore:
    name = "state"

    def __init__(self, backend: Any, prefix: str) -> None:
        self.backend = backend
        self.prefix = prefix  # "cache:<route>:" so entries are easy to find and flush

    async def get(self, key: str) -> Entry | None:
        try:
            data = await self.backend.get(self.prefix + key)
        except StateError as e:
            log.debug("cache read failed: %s", e)
            return None
        if data is None:
            return None
        entry = loads(data)
        if entry is None or entry.stale_until <= time.time():
            return None
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        ttl = entry.stale_until - time.time()
        if ttl <= 0:
            return
        try:
            await self.backend.set(self.prefix + key, dumps(entry), ttl=ttl)
        except StateError as e:
            log.debug("cache write failed: %s", e)

    def close(self) -> None:
        """The backend is process-wide and closed by the server, not by a route."""
