"""The in-process cache store: an LRU bounded by bytes, not by entry count.

One per route (kept in the Registry, so a reload of an unchanged route keeps its
entries). Expired entries are dropped when met; the byte cap evicts least recently used
entries first, so a burst of large bodies cannot grow the worker without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from wxgated.cache.entry import Entry


class MemoryStore:
    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> Entry | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry.stale_until <= time.time():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        size = entry.size
        if size > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = entry
        self.used += size
        while self.used > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        entry = self._items.pop(key)
        self.used -= entry.size

    def close(self) -> None:
        self._items.clear()
        self.used = 0
