"""The in-process rate-limit store: one dict of GCRA `tat`s, bounded in size.

Every decision moves its key to the end of the (insertion-ordered) dict, so the front
is always the least recently seen key. When a new key would exceed `max_keys`, the
front key goes: usually its bucket has long been full again (dropping it changes
nothing); under a flood of distinct keys the store stays at `max_keys` instead of
growing until the process runs out of memory.
"""

from __future__ import annotations

import time

from wxgated.limits.gcra import Decision, Rate, gcra

DEFAULT_MAX_KEYS = 100_000


class LocalStore:
    __slots__ = ("rate", "max_keys", "_tats", "_params")

    def __init__(self, rate: Rate, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._tats: dict[str, int] = {}
        self._params = (rate.interval, rate.tolerance, rate.burst)

    def decide(self, key: str) -> Decision:
        now = time.monotonic_ns() // 1000
        tats = self._tats
        tat = tats.pop(key, 0)
        if tat <= now and len(tats) >= self.max_keys:
            del tats[next(iter(tats))]
        interval, tolerance, burst = self._params
        new_tat, decision = gcra(tat, now, interval, tolerance, burst)
        if new_tat > now:
            tats[key] = new_tat
        return decision

    def __len__(self) -> int:
        return len(self._tats)

    def close(self) -> None:
        self._tats.clear()
